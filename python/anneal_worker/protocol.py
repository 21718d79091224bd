"""The worker protocol, Python side.

The engine starts a worker as `python WORKER.py SPEC.json` (an argument array, never a shell). The spec
(engine/spec.ts, StepSpec) names the params, the input artifact paths, the output staging directory,
the resume directory, the devices and the seed. The worker:

- prints JSON lines on stdout: {"type": "progress", "current", "total", "unit", "loss", "lr",
  "tokens_per_second"}, {"type": "metric", "name", "value"}, {"type": "log", "level", "message"};
  a progress line with "phase" ("loading torch", "loading model", "tokenizing", "training", "saving",
  "evaluating") says what the step is doing until the next phase;
- writes human logs to stderr (the engine stores them in the step's log file);
- exits 0 only when the output directory holds the complete artifact. Any other exit fails the step;
  the last stderr lines become the error the user sees. Exit code 2 means bad input (a clear message
  was printed with `fail`).

Long steps checkpoint into spec["resumeDir"]: it survives interruption and is keyed by the step key.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any


def load_spec(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else os.environ.get("ANNEAL_SPEC")
    if not path:
        fail("usage: worker.py SPEC.json (the engine writes the spec)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fail(message: str, code: int = 2) -> None:
    """Report a clear one-line error and exit. Code 2: bad input, nothing was computed."""
    _emit({"type": "log", "level": "error", "message": message})
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


_stdout = sys.stdout


def _emit(obj: dict[str, Any]) -> None:
    clean = {k: v for k, v in obj.items() if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
    _stdout.write(json.dumps(clean) + "\n")
    _stdout.flush()


@dataclass
class Worker:
    """What a worker script needs from its spec, plus the event helpers."""

    spec: dict[str, Any]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_argv(cls) -> "Worker":
        # Libraries print to stdout (progress bars, warnings); keep stdout for protocol lines only.
        global _stdout
        _stdout = sys.stdout
        sys.stdout = sys.stderr
        _exit_with_parent()
        return cls(load_spec())

    @property
    def params(self) -> dict[str, Any]:
        return self.spec["params"]

    @property
    def inputs(self) -> dict[str, Any]:
        return self.spec["inputs"]

    @property
    def output(self) -> str:
        return self.spec["output"]

    @property
    def resume_dir(self) -> str:
        return self.spec["resumeDir"]

    @property
    def gpus(self) -> list[int]:
        return list(self.spec.get("devices", {}).get("gpus", []))

    def progress(self, current: float, total: float | None = None, unit: str | None = None, **extra: Any) -> None:
        _emit({"type": "progress", "current": current, "total": total, "unit": unit, **extra})

    def phase(self, name: str) -> None:
        """What the step does from now on, shown by the live view until the next phase (rank 0 only)."""
        if os.environ.get("RANK", "0") == "0":
            _emit({"type": "progress", "current": 0, "phase": name})

    def metric(self, name: str, value: float | str) -> None:
        _emit({"type": "metric", "name": name, "value": value})

    def log(self, message: str, level: str = "info") -> None:
        _emit({"type": "log", "level": level, "message": message})


def checkpoint_requested() -> bool:
    """True once the cluster has warned that the job's time limit is near: save a checkpoint now.

    On Slurm the job gets SIGUSR1 some time before its limit (sbatch --signal=B:USR1@120); anneal's
    cluster runner then writes the file named by ANNEAL_CHECKPOINT_REQUEST. A training loop calls this
    once per optimizer step (one stat of a file) and, when it says True, saves its checkpoint into the
    resume dir: the job ends at its limit, and the retry resumes from that checkpoint. Always False
    outside a cluster job.
    """
    request = os.environ.get("ANNEAL_CHECKPOINT_REQUEST")
    return request is not None and os.path.exists(request)


def _exit_with_parent() -> None:
    """Exits when the engine that started us dies (kill -9 gives it no chance to stop us).

    Without this an orphaned worker would keep writing into a staging directory nobody will commit.
    """
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(143)

    threading.Thread(target=watch, name="anneal-parent-watch", daemon=True).start()


def ts_name(name: str) -> str:
    """The name a param has in the recipe and the spec: the dataclass field's name in camelCase.

    Params are camelCase everywhere a user sees them (TS convention); the config dataclasses keep
    Python's snake_case. This pair of functions is the only place the two spellings meet.
    """
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def config_from_params(cls: type, params: dict[str, Any]) -> Any:
    """Builds a worker's config dataclass from spec params (camelCase), refusing unknown names.

    The dataclass is the single source of truth for a worker's fields; the TS Schema mirrors it under
    the `ts_name` of each field and a test checks that the two agree (names, defaults, types).
    """
    by_ts_name = {ts_name(f.name): f.name for f in fields(cls)}
    unknown = sorted(set(params) - set(by_ts_name))
    if unknown:
        fail(f"unknown param(s) {', '.join(unknown)} for {cls.__name__}")
    return cls(**{by_ts_name[k]: v for k, v in params.items()})


def device_and_dtype(gpus: list[int]):
    """The device and dtype the scheduler's assignment implies: bf16 on GPU, fp32 on CPU.

    The engine sets CUDA_VISIBLE_DEVICES to the assigned ids, so inside the worker the GPUs are
    numbered from 0.
    """
    import torch

    if gpus and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank), torch.bfloat16
    return torch.device("cpu"), torch.float32


def require_safetensors(model_dir: str, allow_pickle: bool = False) -> None:
    """Refuses a model directory whose weights are only in pickle form (.bin/.pt), unless opted in."""
    if not os.path.isdir(model_dir):
        fail(f"model directory not found: {model_dir}")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        fail(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    names = os.listdir(model_dir)
    has_st = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not has_st and has_pickle and not allow_pickle:
        fail(
            f"{model_dir} has only pickle weights (.bin/.pt); anneal loads safetensors only. "
            "Convert them, or set allowPickle: true on the step if you trust the file."
        )
    if not has_st and not has_pickle:
        fail(f"{model_dir} has no weights (*.safetensors)")
