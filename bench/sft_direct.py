"""The direct-TRL side of bench/sft-overhead.ts: the same SFT run as the anneal `sft-lora` step with
the bench's params, written the way a TRL user would (SFTTrainer, no anneal code), so the two can be
timed side by side.

Usage: python bench/sft_direct.py MODEL_DIR DATA_DIR MAX_STEPS OUT_DIR
Prints one JSON line: {"tokens", "train_runtime", "tokens_per_second"}.
"""
import json
import os
import sys

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data_dir, max_steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)  # the anneal step gets one CPU slot by default

PROMPT = ("Below is an instruction that describes a task. "
          "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
rows = [json.loads(line) for line in open(os.path.join(data_dir, "data.jsonl"))]
examples = [{"prompt": (PROMPT_INPUT if r.get("input") else PROMPT).format(**r), "completion": r["output"]} for r in rows]

tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
args = SFTConfig(
    output_dir=out, max_length=512, completion_only_loss=True, packing=False, per_device_train_batch_size=4,
    gradient_accumulation_steps=1, max_steps=max_steps, learning_rate=2e-4, lr_scheduler_type="linear",
    warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False, logging_steps=1,
    save_strategy="no", seed=0, data_seed=0, report_to="none", disable_tqdm=True,
    include_num_input_tokens_seen="non_padding", use_cpu=True, bf16=False, fp16=False,
)
peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tok,
                     peft_config=peft)
result = trainer.train()
tokens = trainer.state.num_input_tokens_seen
runtime = result.metrics["train_runtime"]
print(json.dumps({"tokens": tokens, "train_runtime": runtime, "tokens_per_second": tokens / runtime}))
