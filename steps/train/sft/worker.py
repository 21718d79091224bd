"""sft: supervised fine-tuning of a causal LM, full or LoRA, with TRL's SFTTrainer.

Run by the engine as `python steps/train/sft/worker.py SPEC.json` (see engine/spec.ts); with several
processes (nodes x gpusPerNode, or `processes` on CPU) under torchrun (steps/train/torchrun.ts), as DDP,
FSDP (full fine-tuning) or DeepSpeed ZeRO (`strategy`, anneal_worker/distributed.py). Two step kinds run this script: `sft` saves a Model (LoRA adapters are merged into
the base), `sft-lora` saves the PEFT Adapter alone.

- Data: instruction rows get the Alpaca template (or a chat turn with template "chat"), messages use the
  tokenizer's chat template (ChatML when it has none), prompt-completion rows are used as they are,
  text rows train on every token. With completion_only_loss the prompt tokens carry no loss. Rows
  stream from the input into an Arrow file that training memory-maps (training.streamed_dataset).
- LoRA: r, alpha, dropout, target modules (checked against the model's module names before loading any
  weights); preset "platypus" = gate_proj/up_proj/down_proj, r 16, alpha 16, dropout 0.05, lr 4e-4,
  cosine, 100 warmup steps, weight decay 0 (Platypus, arXiv 2308.07317). Null fields come from the
  preset, else from DEFAULTS.
- NEFTune: `neftune_noise_alpha` (off by default) adds Uniform(-1, 1) * alpha / sqrt(L * d) to the
  embeddings in training mode only (transformers' implementation: L is the padded batch length).
  The worker measures the noise the embeddings really carry in the first training forward pass and
  reports it (metrics `embedding_noise_max_abs`, `embedding_noise_std`, `embedding_noise_seq_len`,
  `embedding_noise_dim`; 0 without NEFTune), so a test can hold it to alpha / sqrt(L * d).
- Checkpoints every `save_steps` optimizer steps go to the resume dir; a rerun resumes from the newest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from anneal_worker.datasets import iter_checked_rows
from anneal_worker.distributed import (
    FSDP_SHARDING, STRATEGIES, check_strategy, check_world, route_rank_output, strategy_args, uses_fsdp,
)
from anneal_worker.protocol import Worker, config_from_params, fail
from anneal_worker.templates import CHATML, to_prompt_completion
from anneal_worker.training import (
    LR_SCHEDULERS, check, check_choices, check_non_negative, check_positive, choice, device_args,
    is_main_process, last_checkpoint, limit_cpu_threads, load_causal_lm, load_tokenizer, model_dir_input,
    model_module_names, progress_callback, remove_training_args, report_train_metrics, resolve_preset,
    streamed_dataset, training_dtype,
)

WHO = "sft"

PRESETS = {
    "none": {},
    "platypus": {
        "adapter": "lora", "lora_r": 16, "lora_alpha": 16, "lora_dropout": 0.05,
        "lora_target_modules": ["gate_proj", "up_proj", "down_proj"],
        "learning_rate": 4e-4, "lr_scheduler": "cosine", "warmup_steps": 100, "weight_decay": 0.0,
    },
}
DEFAULTS = {
    "adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "v_proj"],
    "learning_rate": 2e-4, "lr_scheduler": "linear", "warmup_steps": 0, "weight_decay": 0.0,
}


@dataclass
class SftConfig:
    # --- method (null: from the preset, else DEFAULTS) ---
    preset: str = choice("none", tuple(PRESETS))
    # "lora" trains adapters on a frozen base; "full" trains every weight
    adapter: str | None = choice(None, ("lora", "full"))
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    # module names (e.g. q_proj, gate_proj), or ["all-linear"]
    lora_target_modules: list[str] | None = None
    # scale adapters by alpha/sqrt(r) instead of alpha/r
    use_rslora: bool = False
    # NEFTune noise scale alpha (paper: 5-15); null: off
    neftune_noise_alpha: float | None = None

    # --- data ---
    # how instruction rows become prompts: "alpaca" or "chat" (the tokenizer's chat template)
    template: str = choice("alpaca", ("alpaca", "chat"))
    # loss on completion tokens only (Platypus, Alpaca); false also trains on the prompt
    completion_only_loss: bool = True
    # tokens per example; longer ones are truncated
    max_length: int = 512

    # --- optimization ---
    learning_rate: float | None = None
    lr_scheduler: str | None = choice(None, LR_SCHEDULERS)
    warmup_steps: int | None = None
    weight_decay: float | None = None
    max_grad_norm: float = 1.0
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    # optimizer steps; -1 trains for num_epochs instead
    max_steps: int = -1
    num_epochs: float = 1.0
    gradient_checkpointing: bool = False

    # --- run ---
    save_steps: int = 0
    logging_steps: int = 1
    # machines (torchrun on each); more than 1 needs the Slurm or Ray executor
    nodes: int = 1
    # processes (one per GPU) on each node; null: `processes`, or the GPUs assigned
    gpus_per_node: int | None = None
    # processes per node when gpus_per_node is null (CPU data parallelism over gloo)
    processes: int = 1
    # ddp (replicas), fsdp (sharded; full fine-tuning only), deepspeed (ZeRO; CUDA only)
    strategy: str = choice("ddp", STRATEGIES)
    fsdp_sharding: str = choice("full-shard", FSDP_SHARDING)
    fsdp_auto_wrap: bool = True
    fsdp_activation_checkpointing: bool = False
    fsdp_cpu_offload: bool = False
    deepspeed_stage: int = 2
    # a DeepSpeed config (a JSON file's content) used as it is
    deepspeed_config: dict[str, Any] | None = None
    allow_pickle: bool = False
    # random seed (shuffling, dropout, initialisation, few-shot draws); part of the step key
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(WHO, self)
        check_positive(WHO, self, "lora_r", "lora_alpha", "neftune_noise_alpha", "max_length", "learning_rate",
                       "max_grad_norm", "micro_batch_size", "gradient_accumulation_steps", "num_epochs",
                       "logging_steps", "processes", "nodes", "gpus_per_node")
        check_non_negative(WHO, self, "warmup_steps", "weight_decay", "save_steps")
        check(self.lora_dropout is None or 0 <= self.lora_dropout < 1, f"{WHO}: param loraDropout must be in [0, 1)")
        check(self.lora_target_modules is None or len(self.lora_target_modules) > 0,
              f"{WHO}: param loraTargetModules must name at least one module")
        check(self.max_steps > 0 or self.max_steps == -1, f"{WHO}: param maxSteps must be > 0, or -1 for numEpochs")


def main() -> None:
    worker = Worker.from_argv()
    route_rank_output(worker)
    cfg = config_from_params(SftConfig, worker.params)
    hp = resolve_preset(cfg, PRESETS, DEFAULTS)
    save_adapter = worker.spec.get("kind") == "sft-lora"
    who = worker.spec.get("kind", WHO)

    # --- validate inputs before touching a device ---
    check(not (save_adapter and hp["adapter"] != "lora"), f"{who}: saves a LoRA adapter, so param adapter must be lora")
    check_strategy(who, cfg, lora=hp["adapter"] == "lora", worker=worker)
    check_world(who, cfg, worker)
    accept = ("instruction", "prompt-completion", "messages", "text")
    fmt, _ = next(iter_checked_rows(worker.inputs["data"], accept, f"{who}: input 'data'"))
    base = model_dir_input(f"{who}: input 'model'", worker.inputs.get("model"), cfg.allow_pickle)
    if hp["adapter"] == "lora" and hp["lora_target_modules"] != ["all-linear"]:
        known = model_module_names(base)
        unknown = [m for m in hp["lora_target_modules"] if m not in known]
        if unknown:
            linear = sorted(n for n in known if n.endswith("_proj") or n in ("fc1", "fc2", "dense"))
            fail(f"{who}: param loraTargetModules: {', '.join(unknown)} not in the model "
                 f"(its projection modules: {', '.join(linear)})")

    def examples():
        for _, row in iter_checked_rows(worker.inputs["data"], accept, f"{who}: input 'data'"):
            try:
                yield to_prompt_completion(fmt, row, cfg.template)
            except ValueError as e:
                fail(f"{who}: input 'data': {e}")

    # --- setup ---
    worker.phase("loading torch")
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    from transformers import set_seed

    limit_cpu_threads(worker)
    # every row is checked (and written to disk) before any model is loaded
    train = streamed_dataset(worker, examples, "rows")
    worker.phase("loading model")
    tok = load_tokenizer(base)
    if fmt == "messages" or cfg.template == "chat":
        if tok.chat_template is None:
            tok.chat_template = CHATML
    set_seed(cfg.seed)
    model = load_causal_lm(base, training_dtype(worker), cfg.allow_pickle)
    peft_config = None
    if hp["adapter"] == "lora":
        targets = hp["lora_target_modules"]
        peft_config = LoraConfig(
            r=hp["lora_r"], lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
            target_modules="all-linear" if targets == ["all-linear"] else list(targets),
            use_rslora=cfg.use_rslora, task_type="CAUSAL_LM",
        )

    args = SFTConfig(
        output_dir=worker.resume_dir,
        max_length=cfg.max_length,
        completion_only_loss=cfg.completion_only_loss if fmt != "text" else None,
        packing=False,
        neftune_noise_alpha=cfg.neftune_noise_alpha,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        learning_rate=hp["learning_rate"],
        lr_scheduler_type=hp["lr_scheduler"],
        warmup_steps=hp["warmup_steps"],
        weight_decay=hp["weight_decay"],
        max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 500,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        dataset_num_proc=None,
        include_num_input_tokens_seen="non_padding",
        **device_args(worker),
        **strategy_args(who, cfg, worker),
    )
    progress = progress_callback(worker)
    worker.phase("tokenizing")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok,
                         peft_config=peft_config, callbacks=[progress, embedding_noise_probe(worker)])
    if is_main_process() and peft_config is not None:
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in trainer.model.parameters())
        worker.metric("trainable_parameters", trainable)
        worker.metric("trainable_percent", 100.0 * trainable / total)

    # --- loop ---
    resume = last_checkpoint(worker.resume_dir)
    if resume and is_main_process():
        worker.log(f"resuming from {resume}")
    worker.phase("training")
    result = trainer.train(resume_from_checkpoint=resume)

    # --- save ---
    worker.phase("saving")
    full_state = None
    if uses_fsdp(cfg, worker):  # gathering the shards is a collective: every rank takes part, rank 0 writes
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        full_state = trainer.accelerator.get_state_dict(trainer.model)
    if is_main_process():
        trained = trainer.model
        if full_state is not None:
            trained = trainer.accelerator.unwrap_model(trained)
        if peft_config is not None and not save_adapter:
            trained = trained.merge_and_unload()
        trained.save_pretrained(worker.output, **({"state_dict": full_state} if full_state is not None else {}))
        if not save_adapter:
            tok.save_pretrained(worker.output)
        remove_training_args(worker.output)
        report_train_metrics(worker, result.metrics)
        for name in ("first_loss", "last_loss"):
            if getattr(progress, name) is not None:
                worker.metric(name, getattr(progress, name))
        worker.log(f"saved {'an adapter' if save_adapter else 'a model'} to {os.path.basename(worker.output)}")


def embedding_noise_probe(worker: Worker):
    """A TrainerCallback that, once training has begun (after the Trainer hooks NEFTune onto the input
    embeddings), compares the embeddings' first training-mode output with the module's own forward
    (hooks bypassed) and reports the difference: the noise actually added. One forward, then removed."""
    import torch
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            embeddings = model.get_input_embeddings()

            def measure(module, inputs, output):
                if not module.training:
                    return None
                from torch.distributed.tensor import DTensor

                if isinstance(module.weight, DTensor):
                    # sharded by FSDP: the module's own forward outside FSDP's hooks would mix the
                    # weight's shard with plain tensors; the probe is a diagnostic, so it stands aside
                    handle.remove()
                    return None
                with torch.no_grad():
                    noise = (output - module.forward(*inputs)).float()
                if is_main_process():
                    worker.metric("embedding_noise_max_abs", noise.abs().max().item())
                    worker.metric("embedding_noise_std", noise.std().item())
                    worker.metric("embedding_noise_seq_len", output.size(1))
                    worker.metric("embedding_noise_dim", output.size(2))
                handle.remove()
                return None

            handle = embeddings.register_forward_hook(measure)

    return Probe()


if __name__ == "__main__":
    main()
