"""eval: score a model with EleutherAI's lm-evaluation-harness and write a Report artifact.

Run by the engine as `python steps/train/eval/worker.py SPEC.json` (see engine/spec.ts).

- Local tasks: each `benchmarks` input is a dataset of multiple-choice rows {question, choices, answer}
  (answer = index of the right choice). The worker writes an lm-eval task YAML for it (dataset_path
  json, output_type multiple_choice, metrics acc and acc_norm) and runs it like any harness task.
- Built-in tasks: `tasks` names harness tasks (arc_challenge, hellaswag, ...); they run when their data
  is already in the local Hugging Face datasets cache, since nothing is downloaded.
- `preset: "leaderboard-v1"` = Open LLM Leaderboard v1: arc_challenge 25-shot acc_norm, hellaswag
  10-shot acc_norm, mmlu 5-shot acc, truthfulqa_mc2 0-shot (reported as acc).
- Quantized models (the `quantize` step's outputs): bitsandbytes and GPTQ (compressed-tensors)
  directories load through transformers as they are; a GGUF output (a directory holding model.gguf)
  is scored by llama.cpp itself (llama_lm.py: an lm-eval model over anneal's llama-loglik tool, the
  GGUF's own tokenizer and quantized kernels), so fp and quantized models are scored by the same
  harness with the same metrics (report.json's "weights" says which).
- Output: report.json ({"results": the harness's results, "table": one row per task and metric}) and
  report.md (the same table), so reports from several models can be compared; with `logSamples`, also
  samples.jsonl (each item's per-choice log-likelihoods or generation, and its scores).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

from anneal_worker.datasets import dataset_files, iter_rows
from anneal_worker.protocol import Worker, config_from_params, fail
from anneal_worker.training import (
    check, check_choices, check_positive, choice, limit_cpu_threads, model_dir_input, training_dtype,
)

WHO = "eval"

# task -> (num_fewshot, the metric the leaderboard reports)
PRESETS: dict[str, dict[str, tuple[int, str]]] = {
    "none": {},
    "leaderboard-v1": {
        "arc_challenge": (25, "acc_norm"),
        "hellaswag": (10, "acc_norm"),
        "mmlu": (5, "acc"),
        "truthfulqa_mc2": (0, "acc"),
    },
}
LOCAL_TEMPLATE = "Question: {{question}}\nAnswer:"


@dataclass
class EvalConfig:
    # built-in harness tasks to run besides the preset's and the local ones
    tasks: list[str] = field(default_factory=list)
    preset: str = choice("none", tuple(PRESETS))
    # names of the local tasks made from the `benchmarks` inputs, in order (default local_0, local_1, ...)
    local_task_names: list[str] = field(default_factory=list)
    # few-shot examples for the tasks not in the preset
    num_fewshot: int = 0
    # examples per task (0: all); for quick smoke runs
    limit: int = 0
    batch_size: int = 8
    # GGUF models: llama.cpp's context window (0: the model's training context, at most 4096)
    gguf_ctx: int = 0
    # also write samples.jsonl: every item's per-choice log-likelihoods (or generation) and its scores
    log_samples: bool = False
    allow_pickle: bool = False
    # random seed (shuffling, dropout, initialisation, few-shot draws); part of the step key
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(WHO, self)
        check_positive(WHO, self, "batch_size")
        check(self.num_fewshot >= 0, f"{WHO}: param numFewshot must be >= 0, got {self.num_fewshot}")
        check(self.limit >= 0, f"{WHO}: param limit must be >= 0, got {self.limit}")
        check(self.gguf_ctx >= 0, f"{WHO}: param ggufCtx must be >= 0, got {self.gguf_ctx}")
        for name in self.local_task_names:
            check(name.replace("_", "").isalnum(), f"{WHO}: param localTaskNames: {name!r} must be letters, digits and _")


def check_mc_rows(path: str, who: str) -> int:
    """Multiple-choice rows: {question: str, choices: [str, ...], answer: int index}."""
    n = 0
    for file, line, row in iter_rows(path):
        q, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
        ok = isinstance(q, str) and isinstance(choices, list) and len(choices) >= 2 \
            and all(isinstance(c, str) for c in choices) and isinstance(answer, int) and 0 <= answer < len(choices)
        if not ok:
            fail(f"{who}: {file}:{line}: expected a multiple-choice row "
                 "{question: string, choices: [string, ...], answer: index of the right choice}")
        n += 1
    if n == 0:
        fail(f"{who}: benchmark {path} is empty")
    return n


def write_local_task(task_dir: str, name: str, files: list[str], num_fewshot: int) -> None:
    """An lm-eval task config for a local multiple-choice JSONL (the harness's own YAML format)."""
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": files}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": LOCAL_TEMPLATE,
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }
    if num_fewshot > 0:
        config["fewshot_split"] = "test"
    # JSON is valid YAML, and needs no YAML writer
    with open(os.path.join(task_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def table_rows(results: dict, shots: dict[str, int], headline: dict[str, str]) -> list[dict]:
    rows = []
    for task, metrics in sorted(results.items()):
        for key, value in sorted(metrics.items()):
            metric, _, filt = key.partition(",")
            if metric.endswith("_stderr") or not isinstance(value, (int, float)) or metric in ("alias", "sample_len"):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append({
                "task": task, "metric": metric, "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                "num_fewshot": shots.get(task), "headline": headline.get(task) == metric,
            })
    return rows


def sample_row(task: str, item: dict) -> dict:
    """One line of samples.jsonl: an item's responses as the harness scored them. For a multiple-choice
    item, `loglikelihoods[i]` is the log-likelihood of choice i and `greedy[i]` whether it is the greedy
    continuation; for a generation, `generated` is the model's text."""
    row: dict = {"task": task, "doc_id": item.get("doc_id"), "target": item.get("target")}
    responses = [r[0] if isinstance(r, list) and len(r) == 1 else r for r in item.get("filtered_resps") or []]
    if responses and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in responses):
        row["loglikelihoods"] = [float(r[0]) for r in responses]
        row["greedy"] = [bool(r[1]) for r in responses]
    else:
        row["generated"] = [str(r) for r in responses]
    for metric in ("acc", "acc_norm", "exact_match"):
        if isinstance(item.get(metric), (int, float)):
            row[metric] = float(item[metric])
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| task | metric | n-shot | value | stderr |", "|---|---|---:|---:|---:|"]
    for r in rows:
        stderr = f"{r['stderr']:.4f}" if r["stderr"] is not None else ""
        lines.append(f"| {r['task']} | {r['metric']} | {r['num_fewshot']} | {r['value']:.4f} | {stderr} |")
    return "\n".join(lines) + "\n"


def gguf_file_in(path: str | None) -> str | None:
    """The GGUF file of a quantize (format gguf) output: a directory without config.json holding one
    *.gguf file; None for a Hugging Face model directory."""
    if not path or not os.path.isdir(path) or os.path.exists(os.path.join(path, "config.json")):
        return None
    ggufs = sorted(n for n in os.listdir(path) if n.endswith(".gguf"))
    if not ggufs:
        return None
    check(len(ggufs) == 1, f"{WHO}: input 'model': {path} holds {len(ggufs)} GGUF files ({', '.join(ggufs)}); expected one")
    return ggufs[0]


def check_gguf_file(file: str) -> None:
    """A GGUF file starts with the magic b"GGUF" and a version; anything else is refused before loading."""
    try:
        with open(file, "rb") as f:
            head = f.read(8)
    except OSError as e:
        fail(f"{WHO}: input 'model': cannot read {file}: {e.strerror}")
    check(len(head) == 8 and head[:4] == b"GGUF",
          f"{WHO}: input 'model': {file} is not a GGUF file (it does not start with the GGUF magic)")


def open_gguf(worker: Worker, file: str, ctx: int):
    """The GGUF loaded by llama.cpp (llama_lm.LlamaCppLM); a file llama.cpp cannot load fails the step."""
    tool = os.environ.get("ANNEAL_LLAMA_LOGLIK", "")
    check(bool(tool) and os.path.exists(tool),
          f"{WHO}: input 'model': {file} is a GGUF model, scored with llama.cpp, which is not built on this "
          "machine: run `npx anneal setup --with llama-cpp`")
    from llama_lm import LlamaCppError, LlamaCppLM

    cpus = int(worker.spec.get("devices", {}).get("cpus", 0) or 0)
    try:
        return LlamaCppLM(tool, file, ctx=ctx, threads=cpus, log=lambda line: worker.log(line, level="debug"))
    except LlamaCppError as e:
        fail(f"{WHO}: input 'model': llama.cpp cannot load {file}: {e}")


def weights_description(model_dir: str, gguf: str | None) -> str:
    """What was evaluated, for the report: the quantization the model directory declares, if any."""
    if gguf is not None:
        commit = os.environ.get("ANNEAL_LLAMA_CPP_COMMIT", "")
        return f"gguf {gguf} (llama.cpp{' ' + commit[:8] if commit else ''})"
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            q = json.load(f).get("quantization_config") or {}
    except (OSError, ValueError):
        q = {}
    if not q:
        return "full precision"
    if q.get("quant_method") == "bitsandbytes":
        return "bitsandbytes " + ("int8" if q.get("load_in_8bit") else str(q.get("bnb_4bit_quant_type", "4-bit")))
    return str(q.get("quant_method", "quantized"))


class Clock:
    """Seconds per phase since the worker started, as debug log lines (the eval profile)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.last = time.monotonic()

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.worker.log(f"{WHO}: {what}: {now - self.last:.2f} s", level="debug")
        self.last = now


def main() -> None:
    worker = Worker.from_argv()
    cfg = config_from_params(EvalConfig, worker.params)

    # --- validate inputs before touching a device ---
    gguf = gguf_file_in(worker.inputs.get("model"))
    if gguf is None:
        model_dir = model_dir_input(f"{WHO}: input 'model'", worker.inputs.get("model"), cfg.allow_pickle)
    else:
        model_dir = worker.inputs["model"]
        check_gguf_file(os.path.join(model_dir, gguf))
    adapter = worker.inputs.get("adapter")
    check(not (adapter and gguf), f"{WHO}: input 'adapter': a LoRA adapter cannot be applied to a GGUF model ({gguf}); "
                                  "merge it first (lora-merge), then quantize")
    if adapter:
        check(os.path.exists(os.path.join(adapter, "adapter_config.json")),
              f"{WHO}: input 'adapter': {adapter} is not a PEFT adapter directory (no adapter_config.json)")
    benchmarks = worker.inputs.get("benchmarks") or []
    names = list(cfg.local_task_names) or [f"local_{i}" for i in range(len(benchmarks))]
    check(len(names) == len(benchmarks),
          f"{WHO}: param localTaskNames has {len(names)} names for {len(benchmarks)} benchmarks inputs")
    for path, name in zip(benchmarks, names):
        check_mc_rows(path, f"{WHO}: benchmark {name}")
    # group tasks by few-shot count: the harness takes one num_fewshot per call
    groups: dict[int, list[str]] = {}
    shots: dict[str, int] = {}
    headline: dict[str, str] = {}
    for task, (k, metric) in PRESETS[cfg.preset].items():
        groups.setdefault(k, []).append(task)
        shots[task], headline[task] = k, metric
    for task in list(cfg.tasks) + names:
        if task not in shots:
            groups.setdefault(cfg.num_fewshot, []).append(task)
            shots[task] = cfg.num_fewshot
    for name in names:
        headline.setdefault(name, "acc")
    check(bool(shots), f"{WHO}: nothing to evaluate: give benchmarks inputs, tasks, or a preset")

    # --- setup ---
    # What an eval of a few items spends its time on, when nothing here is done about it: building the
    # index of the harness's ~14,000 built-in task YAMLs (over a minute on a loaded 2-core machine; a
    # local task needs none of them), a model load per few-shot group, and imports (shared with the
    # other Python steps of a run by the warm worker). Each phase's seconds go to the step's log.
    worker.phase("loading torch")
    clock = Clock(worker)
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    task_dir = os.path.join(worker.resume_dir, "tasks")
    os.makedirs(task_dir, exist_ok=True)
    for path, name in zip(benchmarks, names):
        write_local_task(task_dir, name, [os.path.abspath(f) for f in dataset_files(path)], shots[name])
    clock.lap("imports")
    builtin = [t for t in shots if t not in names]
    manager = TaskManager(include_path=task_dir, include_defaults=bool(builtin))
    known = set(manager.all_tasks)
    missing = [t for t in shots if t not in known]
    check(not missing, f"{WHO}: unknown lm-eval task(s): {', '.join(missing)}")
    clock.lap(f"task index ({'built-in and local' if builtin else 'local only'})")

    if gguf is not None:
        # llama.cpp scores the GGUF itself: its tokenizer, its quantized weights and kernels
        worker.phase("loading model")
        lm = open_gguf(worker, os.path.join(model_dir, gguf), cfg.gguf_ctx)
        device = "cpu"
    else:
        import torch
        limit_cpu_threads(worker)
        dtype = training_dtype(worker)
        model_args = {"pretrained": model_dir, "dtype": "bfloat16" if dtype == torch.bfloat16 else "float32"}
        if adapter:
            model_args["peft"] = adapter
        device = "cuda:0" if worker.gpus and torch.cuda.is_available() else "cpu"
        worker.phase("loading model")
        # built the way simple_evaluate builds it from model="hf", once for every few-shot group
        lm = get_model("hf").create_from_arg_obj(
            model_args, {"batch_size": cfg.batch_size, "max_batch_size": None, "device": device}
        )
    clock.lap("model load")

    # --- evaluate ---
    worker.phase("evaluating")
    results: dict = {"results": {}, "n-shot": {}, "versions": {}, "higher_is_better": {}, "n-samples": {}}
    samples: list[dict] = []
    done = 0
    for k, tasks in sorted(groups.items()):
        worker.progress(done, len(shots), "tasks")
        try:
            out = lm_eval.simple_evaluate(
                model=lm, tasks=tasks, num_fewshot=k, batch_size=cfg.batch_size,
                device=device, limit=cfg.limit or None, task_manager=manager, log_samples=cfg.log_samples,
                random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
                fewshot_random_seed=cfg.seed,
            )
        except Exception as e:
            if type(e).__name__ == "LlamaCppError":
                fail(f"{WHO}: input 'model': llama.cpp failed on {os.path.join(model_dir, gguf or '')}: {e}")
            if not isinstance(e, (ConnectionError, OSError, ValueError)):
                raise
            fail(f"{WHO}: tasks {', '.join(tasks)} could not run offline ({type(e).__name__}: {str(e)[:200]}); "
                 "built-in tasks need their data in the local Hugging Face datasets cache", code=1)
        for part in results:
            results[part].update(out.get(part, {}))
        for task, items in sorted((out.get("samples") or {}).items()):
            samples.extend(sample_row(task, item) for item in items)
        done += len(tasks)
    worker.progress(done, len(shots), "tasks")
    clock.lap(f"evaluation of {len(shots)} task(s)")
    if gguf is not None:
        lm.close()

    # --- save ---
    worker.phase("saving")
    rows = table_rows(results["results"], shots, headline)
    report = {"model": os.path.basename(os.path.normpath(model_dir)), "results": results, "table": rows,
              "weights": weights_description(model_dir, gguf)}
    with open(os.path.join(worker.output, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with open(os.path.join(worker.output, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown(rows))
    if cfg.log_samples:
        with open(os.path.join(worker.output, "samples.jsonl"), "w", encoding="utf-8") as f:
            for row in samples:
                f.write(json.dumps(row, sort_keys=True) + "\n")
    for r in rows:
        if r["headline"]:
            worker.metric(f"{r['task']}/{r['metric']}", r["value"])


if __name__ == "__main__":
    main()
    # Everything is written and closed. The interpreter's own teardown after torch and lm-eval takes
    # ~10 s on a loaded 2-core machine (C-level finalisation: not atexit handlers, not gc), longer than
    # the evaluation of a small task, so finish as the warm worker's children do (threads joined, atexit
    # run, streams flushed) and leave.
    from anneal_worker.warm_child import finish
    finish()
    os._exit(0)
