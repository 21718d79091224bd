"""dpo: Direct Preference Optimization with TRL's DPOTrainer on a Preference dataset.

Run by the engine as `python steps/train/dpo/worker.py SPEC.json` (see engine/spec.ts); with several
processes (nodes x gpusPerNode, or `processes` on CPU) under torchrun (steps/train/torchrun.ts). Two step kinds run
this script: `dpo` saves a Model (LoRA adapters merged into the base), `dpo-lora` the Adapter alone.

- The policy starts from the input model. With LoRA the reference log-probabilities come from the same
  model with its adapters disabled (no second copy in memory); with full training, from a frozen copy.
- beta scales the implicit reward; loss_type is one or more of TRL's losses (sigmoid = the DPO paper,
  ipo, hinge, ...), combined with equal weights when several are given.
- Rows are {prompt, chosen, rejected}; the prompt is used as it is (apply templates upstream).
- Checkpoints every `save_steps` optimizer steps go to the resume dir; a rerun resumes from the newest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from anneal_worker.datasets import iter_checked_rows
from anneal_worker.distributed import (
    FSDP_SHARDING, STRATEGIES, check_strategy, check_world, route_rank_output, strategy_args, uses_fsdp,
)
from anneal_worker.protocol import Worker, config_from_params, fail
from anneal_worker.training import (
    LR_SCHEDULERS, check, check_choices, check_non_negative, check_positive, choice, device_args,
    is_main_process, last_checkpoint, limit_cpu_threads, load_causal_lm, load_tokenizer, model_dir_input,
    model_module_names, progress_callback, remove_training_args, report_train_metrics, streamed_dataset,
    training_dtype,
)

WHO = "dpo"
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class DpoConfig:
    # --- method ---
    # strength of the KL penalty toward the reference (TRL default 0.1)
    beta: float = 0.1
    # TRL loss name(s); several are summed with equal weights
    loss_type: list[str] = choice(["sigmoid"], LOSS_TYPES)
    # "lora" trains adapters on a frozen base (reference = adapters disabled); "full" trains every weight
    adapter: str = choice("lora", ("lora", "full"))
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    # --- data ---
    # tokens per prompt + answer; longer pairs are truncated
    max_length: int = 512

    # --- optimization ---
    learning_rate: float = 5e-6
    lr_scheduler: str = choice("linear", LR_SCHEDULERS)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
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
        check(len(self.loss_type) > 0, f"{WHO}: param lossType must name at least one loss")
        check_positive(WHO, self, "beta", "lora_r", "lora_alpha", "max_length", "learning_rate", "max_grad_norm",
                       "micro_batch_size", "gradient_accumulation_steps", "num_epochs", "logging_steps", "processes",
                       "nodes", "gpus_per_node")
        check_non_negative(WHO, self, "warmup_steps", "weight_decay", "save_steps")
        check(0 <= self.lora_dropout < 1, f"{WHO}: param loraDropout must be in [0, 1)")
        check(len(self.lora_target_modules) > 0, f"{WHO}: param loraTargetModules must name at least one module")
        check(self.max_steps > 0 or self.max_steps == -1, f"{WHO}: param maxSteps must be > 0, or -1 for numEpochs")


def main() -> None:
    worker = Worker.from_argv()
    route_rank_output(worker)
    cfg = config_from_params(DpoConfig, worker.params)
    save_adapter = worker.spec.get("kind") == "dpo-lora"
    who = worker.spec.get("kind", WHO)

    # --- validate inputs before touching a device ---
    check(not (save_adapter and cfg.adapter != "lora"), f"{who}: saves a LoRA adapter, so param adapter must be lora")
    check_strategy(who, cfg, lora=cfg.adapter == "lora", worker=worker)
    check_world(who, cfg, worker)
    next(iter_checked_rows(worker.inputs["data"], ("preference",), f"{who}: input 'data'"))
    base = model_dir_input(f"{who}: input 'model'", worker.inputs.get("model"), cfg.allow_pickle)
    if cfg.adapter == "lora" and cfg.lora_target_modules != ["all-linear"]:
        known = model_module_names(base)
        unknown = [m for m in cfg.lora_target_modules if m not in known]
        if unknown:
            fail(f"{who}: param loraTargetModules: {', '.join(unknown)} not in the model")

    # --- setup ---
    worker.phase("loading torch")
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer
    from transformers import set_seed

    limit_cpu_threads(worker)

    def pairs():
        for _, r in iter_checked_rows(worker.inputs["data"], ("preference",), f"{who}: input 'data'"):
            yield {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}

    # every row is checked (and written to disk) before any model is loaded
    train = streamed_dataset(worker, pairs, "pairs")
    worker.phase("loading model")
    tok = load_tokenizer(base)
    set_seed(cfg.seed)
    dtype = training_dtype(worker)
    model = load_causal_lm(base, dtype, cfg.allow_pickle)
    ref_model = None
    peft_config = None
    if cfg.adapter == "lora":
        targets = cfg.lora_target_modules
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules="all-linear" if targets == ["all-linear"] else list(targets),
                                 task_type="CAUSAL_LM")
    else:
        ref_model = load_causal_lm(base, dtype, cfg.allow_pickle)

    args = DPOConfig(
        output_dir=worker.resume_dir,
        beta=cfg.beta,
        loss_type=list(cfg.loss_type),
        max_length=cfg.max_length,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
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
        include_num_input_tokens_seen="non_padding",
        **device_args(worker),
        **strategy_args(who, cfg, worker),
    )
    progress = progress_callback(worker)
    worker.phase("tokenizing")
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train, processing_class=tok,
                         peft_config=peft_config, callbacks=[progress])

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
        history = [h for h in trainer.state.log_history if "rewards/margins" in h]
        if history:
            worker.metric("first_reward_margin", float(history[0]["rewards/margins"]))
            worker.metric("last_reward_margin", float(history[-1]["rewards/margins"]))
        worker.log(f"saved {'an adapter' if save_adapter else 'a model'} to {os.path.basename(worker.output)}")


if __name__ == "__main__":
    main()
