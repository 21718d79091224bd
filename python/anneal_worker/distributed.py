"""What a training worker does differently when torchrun starts it as one of several processes.

- Output: only global rank 0 speaks the worker protocol on stdout (the engine reads one stream); every
  other rank writes its stdout and stderr to its own log beside the step's log,
  `<step>.rank<R>.log`, so a failing rank's traceback is kept.
- Strategy: `ddp` (the Trainer's DistributedDataParallel), `fsdp` (PyTorch FSDP2 through Accelerate:
  full-shard or shard-grad-op, wrapped per transformer layer, optional activation checkpointing and CPU
  offload, sharded checkpoints; on CUDA and on CPU over gloo: Accelerate 1.x turns its FSDP plugin on for
  GPU-type devices only and would run a CPU job as plain DDP without a word, so `allow_fsdp_on_cpu`
  sets its state to FSDP as it does for GPUs), or `deepspeed` (ZeRO stage 2/3, or the user's config as
  it is; needs CUDA and the deepspeed package, which the project's environment does not ship).
- Backend: gloo on CPU, nccl on CUDA (training.device_args); each rank's device is its LOCAL_RANK-th
  entry of CUDA_VISIBLE_DEVICES, which the Trainer selects.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from .protocol import Worker, fail
from .training import check, is_main_process, rank, world_size

STRATEGIES = ("ddp", "fsdp", "deepspeed")
FSDP_SHARDING = ("full-shard", "shard-grad-op")


def route_rank_output(worker: Worker) -> str | None:
    """On ranks other than 0, sends stdout and stderr (file descriptors 1 and 2, so libraries and
    tracebacks too) to `<step log>.rank<R>.log`; returns that path. Call first thing in a worker."""
    if rank() == 0:
        return None
    log = worker.spec.get("logPath") or os.path.join(worker.resume_dir, "step.log")
    base = log[:-4] if log.endswith(".log") else log
    path = f"{base}.rank{rank()}.log"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return path


def check_strategy(who: str, cfg: Any, lora: bool, worker: Worker) -> None:
    """Checks the distribution params before anything is loaded (choices are checked by check_choices)."""
    check(cfg.deepspeed_stage in (2, 3), f"{who}: param deepspeedStage must be 2 or 3, got {cfg.deepspeed_stage}")
    if cfg.deepspeed_config is not None:
        check(isinstance(cfg.deepspeed_config, dict), f"{who}: param deepspeedConfig must be an object (the JSON file's content)")
        check(cfg.strategy == "deepspeed", f"{who}: param deepspeedConfig is set but strategy is {cfg.strategy!r}, not 'deepspeed'")
    check(not (lora and cfg.strategy == "fsdp"),
          f"{who}: strategy fsdp with a LoRA adapter is not supported; use ddp (the adapter's weights are small)")
    if cfg.strategy == "deepspeed":
        import importlib.util

        check(bool(worker.gpus), f"{who}: strategy deepspeed needs CUDA GPUs (none assigned here); use ddp or fsdp on CPU")
        check(importlib.util.find_spec("deepspeed") is not None,
              f"{who}: strategy deepspeed needs the deepspeed package, which this Python environment lacks")


def check_world(who: str, cfg: Any, worker: Worker) -> None:
    """The processes torchrun started must be the ones the params ask for: the key holds that world
    size (the global batch). With gpusPerNode null, several assigned GPUs also decide it."""
    expected = cfg.nodes * (cfg.gpus_per_node or cfg.processes)
    by_gpus = cfg.gpus_per_node is None and cfg.nodes == 1 and len(worker.gpus) == world_size()
    check(world_size() == expected or by_gpus,
          f"{who}: started with {world_size()} process(es) but params nodes x processes ask for {expected}")


def deepspeed_config(cfg: Any) -> dict[str, Any]:
    """The user's DeepSpeed config as it is, else ZeRO `deepspeed_stage` with every batch, optimizer and
    precision field "auto", so the Trainer fills them from the step's params (one source of truth)."""
    if cfg.deepspeed_config is not None:
        return cfg.deepspeed_config
    zero: dict[str, Any] = {
        "stage": cfg.deepspeed_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if cfg.deepspeed_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def fsdp_config(cfg: Any) -> dict[str, Any]:
    """TrainingArguments.fsdp_config for FSDP2. Checkpoints are sharded (one file per rank: no rank
    gathers the whole model to save, and a resume loads each rank's own shard); the finished model is
    gathered once at the end (save_model)."""
    return {
        "version": 2,
        "reshard_after_forward": cfg.fsdp_sharding == "full-shard",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if cfg.fsdp_auto_wrap else "NO_WRAP",
        "activation_checkpointing": cfg.fsdp_activation_checkpointing,
        "cpu_offload": cfg.fsdp_cpu_offload,
        "state_dict_type": "SHARDED_STATE_DICT",
    }


def strategy_args(who: str, cfg: Any, worker: Worker) -> dict[str, Any]:
    """TrainingArguments for the strategy. One process runs plainly whatever the strategy (there is
    nothing to shard), except deepspeed, whose optimizer and precision handling still apply."""
    if cfg.strategy == "deepspeed":
        if not on_gpu(worker):
            fail(f"{who}: strategy deepspeed needs CUDA GPUs (CUDA is not available here); use ddp or fsdp on CPU")
        return {"deepspeed": deepspeed_config(cfg)}
    if uses_fsdp(cfg):
        config = fsdp_config(cfg)
        if not on_gpu(worker):
            allow_fsdp_on_cpu()
            if cfg.fsdp_cpu_offload:
                config["cpu_offload"] = False
                if is_main_process():
                    worker.log("fsdpCpuOffload does nothing on CPU processes (the parameters are in CPU memory already)", "warn")
        return {"fsdp": True, "fsdp_config": config}
    return {}


def allow_fsdp_on_cpu() -> None:
    """Lets Accelerate shard with FSDP2 on CPU processes (gloo). Accelerate 1.x turns its FSDP plugin on
    only for GPU-type devices and would silently run a CPU job as plain DDP, while PyTorch's FSDP2
    (`fully_shard`) runs on a CPU device mesh over gloo. So when the plugin was given and Accelerate
    settled on MULTI_CPU, its state is set to FSDP, which is what it does for GPUs."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__
    if getattr(init, "_anneal_fsdp_on_cpu", False):
        return

    def patched(self: Any, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    patched._anneal_fsdp_on_cpu = True  # type: ignore[attr-defined]
    AcceleratorState.__init__ = patched  # type: ignore[method-assign]


def on_gpu(worker: Worker) -> bool:
    import torch

    return bool(worker.gpus) and torch.cuda.is_available()


def uses_fsdp(cfg: Any, worker: Worker | None = None) -> bool:
    """FSDP shards over the processes (CUDA or CPU); one process has nothing to shard and runs plainly."""
    return cfg.strategy == "fsdp" and world_size() > 1


def save_trained_model(trainer: Any, cfg: Any, worker: Worker) -> None:
    """Saves the finished model as a Hugging Face directory (safetensors). Called on every rank: under
    FSDP the full weights are gathered from the shards (a collective), then rank 0 writes them."""
    if uses_fsdp(cfg, worker):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(worker.output)


def barrier_wait_for(path: str, who: str, poll: float = 0.2) -> None:
    """Ranks other than 0 wait for a file rank 0 writes (the tokenized corpus). No timeout: if rank 0
    fails, torchrun stops this rank."""
    import time

    if is_main_process():
        return
    while not os.path.exists(path):
        time.sleep(poll)
