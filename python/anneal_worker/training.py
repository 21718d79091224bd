"""Small helpers the training workers share (tokenizer, pretrain, sft, dpo). No base classes: each
worker stays readable top to bottom and calls these where it needs them.
"""
from __future__ import annotations

import os
import time
from dataclasses import field, fields
from typing import Any

from .protocol import Worker, checkpoint_requested, fail, require_safetensors, ts_name

LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


# ----------------------------------------------------------------------------------------------
# Validation (runs before anything touches a device)

def check(condition: bool, message: str) -> None:
    """Fails the step with a one-line message when a condition on the input does not hold."""
    if not condition:
        fail(message)


def check_positive(who: str, cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None:
            check(value > 0, f"{who}: param {ts_name(name)} must be > 0, got {value}")


def check_non_negative(who: str, cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None:
            check(value >= 0, f"{who}: param {ts_name(name)} must be >= 0, got {value}")


def choice(default: Any, options: tuple[str, ...] | list[str]) -> Any:
    """A config field limited to some strings (or a list of them); the TS Schema mirrors the choices as
    literals and the agreement test compares them."""
    meta = {"choices": tuple(options)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_choices(who: str, cfg: Any) -> None:
    """Checks every field declared with `choice` (None passes: it means "from the preset")."""
    for f in fields(cfg):
        options = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if options is None or value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            check(v in options, f"{who}: param {ts_name(f.name)}: {v!r} is not one of {', '.join(options)}")


def resolve_preset(cfg: Any, presets: dict[str, dict[str, Any]], defaults: dict[str, Any]) -> dict[str, Any]:
    """Resolves nullable hyperparameters: a value the recipe set wins, then the preset's, then the default.

    Fields left `None` in the config mean "from the preset, else the default", which is how a preset and
    explicit params combine without the worker having to guess which values the user typed.
    """
    preset = presets.get(getattr(cfg, "preset", "none"), {})
    out: dict[str, Any] = {}
    for name, default in defaults.items():
        value = getattr(cfg, name)
        out[name] = value if value is not None else preset.get(name, default)
    return out


# ----------------------------------------------------------------------------------------------
# Inputs

def model_dir_input(who: str, path: str | None, allow_pickle: bool) -> str:
    """Checks a Model input directory (exists, has config.json, safetensors weights) without loading it."""
    check(path is not None, f"{who}: no base model given")
    assert path is not None
    if not os.path.isdir(path):
        fail(f"{who}: base model directory not found: {path}")
    require_safetensors(path, allow_pickle)
    return path


def tokenizer_dir_input(who: str, path: str) -> str:
    check(os.path.isdir(path), f"{who}: tokenizer directory not found: {path}")
    check(
        os.path.exists(os.path.join(path, "tokenizer.json")) or os.path.exists(os.path.join(path, "tokenizer_config.json")),
        f"{who}: {path} is not a Hugging Face tokenizer directory (no tokenizer.json)",
    )
    return path


def model_module_names(model_dir: str) -> set[str]:
    """The module names of a model (q_proj, gate_proj, layers, ...), read from its safetensors headers:
    no weights are loaded and torch is not even imported, so a bad target module fails in a second."""
    import json
    import struct

    names: set[str] = set()
    files = [n for n in os.listdir(model_dir) if n.endswith(".safetensors")]
    if not files:  # pickle-only weights (allowed by the user): build the model on the meta device
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
        return {part for name, _ in model.named_modules() for part in name.split(".") if part}
    for n in files:
        with open(os.path.join(model_dir, n), "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for tensor in header:
            if tensor != "__metadata__":
                names.update(tensor.split(".")[:-1])
    return names


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, dtype, allow_pickle: bool = False):
    """Loads a causal LM from safetensors (pickle only when the user opted in)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=not allow_pickle)


# ----------------------------------------------------------------------------------------------
# Devices and processes

def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def device_args(worker: Worker) -> dict[str, Any]:
    """TrainingArguments for the devices the scheduler assigned: bf16 on GPU, fp32 on CPU, gloo for
    multi-process CPU runs (torchrun sets RANK/WORLD_SIZE)."""
    import torch

    on_gpu = bool(worker.gpus) and torch.cuda.is_available()
    args: dict[str, Any] = {"use_cpu": not on_gpu, "bf16": on_gpu, "fp16": False}
    if world_size() > 1:
        args["ddp_backend"] = "nccl" if on_gpu else "gloo"
    return args


def limit_cpu_threads(worker: Worker) -> None:
    """On CPU, use the CPU slots the scheduler granted (split among the processes), not every core:
    steps running side by side would otherwise oversubscribe the machine."""
    import torch

    if worker.gpus and torch.cuda.is_available():
        return
    cpus = int(worker.spec.get("devices", {}).get("cpus", 0) or 0)
    if cpus > 0:
        torch.set_num_threads(max(1, cpus // world_size()))
    if is_main_process():
        worker.log(f"cpu: {torch.get_num_threads()} thread(s) per process", "debug")


def training_dtype(worker: Worker):
    import torch

    return torch.bfloat16 if worker.gpus and torch.cuda.is_available() else torch.float32


def remove_training_args(output: str) -> None:
    """Trainer.save_model also pickles its TrainingArguments (training_args.bin) into the output: an
    artifact holds no pickle, and the file's bytes vary between runs, which would defeat early cutoff."""
    path = os.path.join(output, "training_args.bin")
    if is_main_process() and os.path.exists(path):
        os.remove(path)


# ----------------------------------------------------------------------------------------------
# Data larger than memory

def streamed_dataset(worker: Worker, make_rows, name: str):
    """A datasets.Dataset written from `make_rows()` (a generator function) to an Arrow file under the
    resume dir, one batch at a time, and memory-mapped from there: the rows never sit in Python memory,
    the Trainer's tokenizing map writes its own cache files beside it, and sampling is the same as a
    Dataset.from_list's (shuffled by index), so results do not change. Each rank writes its own copy,
    afresh every run (a stale copy could hold another input's rows)."""
    import shutil

    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    cache = os.path.join(worker.resume_dir, f"{name}-rank{rank()}")
    shutil.rmtree(cache, ignore_errors=True)
    return Dataset.from_generator(make_rows, cache_dir=cache, fingerprint=f"anneal-{name}-{rank()}")


# ----------------------------------------------------------------------------------------------
# Checkpoints for mid-step resume

def last_checkpoint(resume_dir: str) -> str | None:
    """The newest complete Trainer checkpoint in the resume dir, or None.

    A checkpoint directory that was being written when the process died lacks trainer_state.json
    (the Trainer writes it last), so it is skipped.
    """
    if not os.path.isdir(resume_dir):
        return None
    best: tuple[int, str] | None = None
    for name in os.listdir(resume_dir):
        if not name.startswith("checkpoint-"):
            continue
        path = os.path.join(resume_dir, name)
        try:
            step = int(name.split("-", 1)[1])
        except ValueError:
            continue
        if os.path.exists(os.path.join(path, "trainer_state.json")) and (best is None or step > best[0]):
            best = (step, path)
    return best[1] if best else None


# ----------------------------------------------------------------------------------------------
# Progress

def checkpoint_requested_by_any_rank() -> bool:
    """protocol.checkpoint_requested(), agreed by every rank: a checkpoint save is collective under
    DDP/FSDP, so one rank seeing the request file a step before another must not make it save alone.
    Costs nothing outside cluster jobs (no request file is named) and one tiny all-reduce per optimizer
    step inside them."""
    if os.environ.get("ANNEAL_CHECKPOINT_REQUEST") is None:
        return False
    seen = checkpoint_requested()
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        import torch
        flag = torch.tensor([1 if seen else 0], dtype=torch.int32)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
    return seen


def progress_callback(worker: Worker, tokens_per_step: int | None = None):
    """A TrainerCallback that streams protocol progress lines: optimizer step/total, loss, lr, tokens per
    second and ETA. Tokens come from `tokens_per_step` (packed data, fixed) or the Trainer's
    num_input_tokens_seen count (variable-length data)."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.step0 = 0
            self.tokens0 = 0
            self.first_loss: float | None = None
            self.last_loss: float | None = None
            self.saved_on_request = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.monotonic()
            self.step0 = state.global_step
            self.tokens0 = state.num_input_tokens_seen or 0
            if is_main_process():
                worker.progress(state.global_step, state.max_steps, "steps")

        def on_step_end(self, args, state, control, **kwargs):
            # a cluster job near its time limit: save the resume checkpoint now (every rank together)
            if not self.saved_on_request and checkpoint_requested_by_any_rank():
                self.saved_on_request = True
                control.should_save = True
                if is_main_process():
                    worker.log(f"checkpoint saved before the time limit (step {state.global_step})")
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not is_main_process() or not logs or "loss" not in logs:
                return
            if self.first_loss is None:
                self.first_loss = float(logs["loss"])
            self.last_loss = float(logs["loss"])
            elapsed = max(time.monotonic() - self.t0, 1e-9)
            done = state.global_step - self.step0
            if tokens_per_step is not None:
                tokens = done * tokens_per_step
            else:
                tokens = (state.num_input_tokens_seen or 0) - self.tokens0
            eta = (state.max_steps - state.global_step) * elapsed / done if done > 0 else None
            worker.progress(
                state.global_step,
                state.max_steps,
                "steps",
                loss=float(logs["loss"]),
                lr=float(logs.get("learning_rate", 0.0)),
                tokens_per_second=tokens / elapsed if tokens else None,
                eta=eta,
            )

    return ProgressCallback()


def report_train_metrics(worker: Worker, metrics: dict[str, Any]) -> None:
    """Final metrics of a Trainer run (train_loss, runtime, ...), reported once by the main process."""
    if not is_main_process():
        return
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            worker.metric(name, float(value))
