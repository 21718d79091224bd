"""The least an lm-eval run of one local task can do: the task's YAML from the include path only (no
index of the built-in tasks), the model built once, simple_evaluate. bench/eval-overhead.ts times it.

    python bench/eval_direct.py MODEL_DIR TASK_DIR TASK
Prints one JSON line: {"acc": ..., "acc_norm": ...}.
"""
import json
import sys

import lm_eval
from lm_eval.tasks import TaskManager

model, task_dir, task = sys.argv[1:4]
out = lm_eval.simple_evaluate(
    model="hf", model_args={"pretrained": model, "dtype": "float32"}, tasks=[task], num_fewshot=0, batch_size=8,
    device="cpu", task_manager=TaskManager(include_path=task_dir, include_defaults=False), log_samples=False,
)
r = out["results"][task]
print(json.dumps({"acc": r["acc,none"], "acc_norm": r["acc_norm,none"]}))
