"""pretrain: train a causal language model on packed Text documents, from scratch or continued.

Run by the engine as `python steps/train/pretrain/worker.py SPEC.json` (see engine/spec.ts); with several
processes (nodes x gpusPerNode, or `processes` on CPU) under torchrun (steps/train/torchrun.ts), as DDP,
FSDP or DeepSpeed ZeRO (`strategy`, anneal_worker/distributed.py).

- From scratch: a tokenizer input plus an architecture (`llama`, or `phi`: partial rotary embeddings and
  attention and MLP in parallel, as in phi-1/phi-1.5), built with transformers' own model classes.
- Continued: a model input; its weights (safetensors only) and tokenizer are the starting point and the
  architecture params are ignored.
- Data: every document is tokenized, followed by the end-of-text token, concatenated, and cut into
  `seq_len` blocks (the remainder is dropped); the loss is next-token prediction on every position.
  The tokens live in memory-mapped shards (anneal_worker/tokenized.py, nanoGPT's layout): either a
  `tokens` input (the `tokenize` step's cached output, shared by every pretrain on the same corpus and
  tokenizer), or the `data` input streamed once into the resume dir (keyed by this step's key, so a
  resumed run does not tokenize again). Neither the corpus nor its tokens are held in memory.
- `preset: "phi-1.5"` sets the paper's optimizer: Adam betas (0.9, 0.98), eps 1e-7, weight decay 0.1,
  constant lr 2e-4, no warmup. Optimizer fields left null come from the preset, else from DEFAULTS.
- Checkpoints every `save_steps` optimizer steps go to the resume dir; a rerun of the same step key
  continues from the newest one and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

from dataclasses import dataclass

import glob
import os
import shutil
from typing import Any

from anneal_worker.datasets import iter_checked_rows
from anneal_worker.distributed import (
    STRATEGIES, FSDP_SHARDING, barrier_wait_for, check_strategy, check_world, route_rank_output, save_trained_model,
    strategy_args,
)
from anneal_worker.protocol import Worker, config_from_params
from anneal_worker.tokenized import META, is_tokenized, read_meta, token_blocks, tokenize_to_shards
from anneal_worker.training import (
    LR_SCHEDULERS, check, check_choices, check_non_negative, check_positive, choice, device_args,
    is_main_process, last_checkpoint, limit_cpu_threads, load_causal_lm, load_tokenizer, model_dir_input,
    progress_callback, remove_training_args, report_train_metrics, resolve_preset, tokenizer_dir_input,
    world_size,
)

WHO = "pretrain"

PRESETS = {
    "none": {},
    "phi-1.5": {
        "learning_rate": 2e-4, "lr_scheduler": "constant", "warmup_steps": 0, "weight_decay": 0.1,
        "adam_beta1": 0.9, "adam_beta2": 0.98, "adam_epsilon": 1e-7,
    },
}
# what a null optimizer field means when the preset does not set it
DEFAULTS = {
    "learning_rate": 3e-4, "lr_scheduler": "cosine", "warmup_steps": 0, "weight_decay": 0.0,
    "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
}


@dataclass
class PretrainConfig:
    # --- architecture (from scratch only; a model input brings its own) ---
    # llama: pre-norm, rotary, SwiGLU MLP. phi: partial rotary, attention and MLP in parallel, GELU MLP
    architecture: str = choice("llama", ("llama", "phi"))
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    # fraction of each head's dims that get rotary embeddings (phi only; phi-1.5: 32 of 64 = 0.5)
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    # --- data ---
    # tokens per packed training sequence (phi-1.5: 2048)
    seq_len: int = 128

    # --- optimization (null: from the preset, else DEFAULTS) ---
    preset: str = choice("none", tuple(PRESETS))
    learning_rate: float | None = None
    lr_scheduler: str | None = choice(None, LR_SCHEDULERS)
    warmup_steps: int | None = None
    weight_decay: float | None = None
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_epsilon: float | None = None
    max_grad_norm: float = 1.0
    # sequences per process per forward pass; the global batch is micro_batch_size x accumulation x processes
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    # optimizer steps; -1 trains for num_epochs over the packed data instead
    max_steps: int = 100
    num_epochs: float = 1.0
    gradient_checkpointing: bool = False

    # --- run ---
    # checkpoint into the resume dir every N optimizer steps (0: never)
    save_steps: int = 0
    logging_steps: int = 1
    # machines (torchrun on each); more than 1 needs the Slurm or Ray executor
    nodes: int = 1
    # processes (one per GPU) on each node; null: `processes`, or the GPUs assigned
    gpus_per_node: int | None = None
    # processes per node when gpus_per_node is null (CPU data parallelism over gloo)
    processes: int = 1
    # ddp (replicas), fsdp (sharded), deepspeed (ZeRO; CUDA only)
    strategy: str = choice("ddp", STRATEGIES)
    fsdp_sharding: str = choice("full-shard", FSDP_SHARDING)
    fsdp_auto_wrap: bool = True
    fsdp_activation_checkpointing: bool = False
    fsdp_cpu_offload: bool = False
    deepspeed_stage: int = 2
    # a DeepSpeed config (a JSON file's content) used as it is
    deepspeed_config: dict[str, Any] | None = None
    # load a base model's pickle (.bin) weights; only for files you trust
    allow_pickle: bool = False
    # random seed (shuffling, dropout, initialisation, few-shot draws); part of the step key
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(WHO, self)
        check_positive(WHO, self, "hidden_size", "num_layers", "num_heads", "intermediate_size", "rope_theta",
                       "seq_len", "learning_rate", "adam_epsilon", "max_grad_norm", "micro_batch_size",
                       "gradient_accumulation_steps", "num_epochs", "logging_steps", "processes", "nodes",
                       "gpus_per_node")
        check_non_negative(WHO, self, "warmup_steps", "weight_decay", "save_steps")
        check(self.hidden_size % self.num_heads == 0,
              f"{WHO}: param hiddenSize ({self.hidden_size}) must be divisible by numHeads ({self.num_heads})")
        check(0 < self.partial_rotary_factor <= 1, f"{WHO}: param partialRotaryFactor must be in (0, 1]")
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            check(v is None or 0 <= v < 1, f"{WHO}: param {name} must be in [0, 1), got {v}")
        check(self.max_steps > 0 or self.max_steps == -1, f"{WHO}: param maxSteps must be > 0, or -1 for numEpochs")


def model_config(cfg: PretrainConfig, tok):
    """A transformers config for a from-scratch model of the chosen architecture."""
    from transformers import LlamaConfig, PhiConfig

    common = dict(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, max_position_embeddings=cfg.seq_len,
        tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if cfg.architecture == "phi":
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta, "partial_rotary_factor": cfg.partial_rotary_factor}
        return PhiConfig(**common, rope_parameters=rope, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
    return LlamaConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta})


def tokens_from_data(worker: Worker, data: str, tok) -> str:
    """The `data` input tokenized into the resume dir (rank 0 writes, the other ranks wait)."""
    out = os.path.join(worker.resume_dir, "tokens")
    if is_main_process() and not is_tokenized(out):
        for partial in glob.glob(out + ".partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        texts = (row["text"] for _, row in iter_checked_rows(data, ("text",), f"{WHO}: input 'data'"))
        tokenize_to_shards(texts, tok, out)
    barrier_wait_for(os.path.join(out, META), WHO)
    return out


def main() -> None:
    worker = Worker.from_argv()
    route_rank_output(worker)
    cfg = config_from_params(PretrainConfig, worker.params)
    hp = resolve_preset(cfg, PRESETS, DEFAULTS)

    # --- validate inputs before touching a device ---
    check_strategy(WHO, cfg, lora=False, worker=worker)
    check_world(WHO, cfg, worker)
    data, tokens = worker.inputs.get("data"), worker.inputs.get("tokens")
    check((data is None) != (tokens is None), f"{WHO}: give one of the inputs data (text) or tokens (a tokenize output)")
    if tokens:
        read_meta(tokens, f"{WHO}: input 'tokens'")
    else:  # the declared format and the first row fail here, in a second; the rest while tokenizing
        next(iter_checked_rows(data, ("text",), f"{WHO}: input 'data'"))
    base = worker.inputs.get("model")
    if base:
        model_dir_input(f"{WHO}: input 'model'", base, cfg.allow_pickle)
    tok_dir = worker.inputs.get("tokenizer") or base
    check(tok_dir is not None, f"{WHO}: give a tokenizer (from scratch) or a model (continued pretraining)")
    tokenizer_dir_input(f"{WHO}: input 'tokenizer'", tok_dir)

    # --- setup ---
    worker.phase("loading torch")
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator, set_seed

    limit_cpu_threads(worker)
    tok = load_tokenizer(tok_dir)
    check(tok.eos_token_id is not None, f"{WHO}: the tokenizer in {tok_dir} has no eos token")

    # --- data ---
    worker.phase("tokenizing")
    corpus = tokens or tokens_from_data(worker, data, tok)
    train, meta = token_blocks(corpus, cfg.seq_len, f"{WHO}: input 'tokens'" if tokens else WHO)
    check(meta["vocab_size"] <= len(tok) and meta["eos_token_id"] == tok.eos_token_id,
          f"{WHO}: input 'tokens' was made with another tokenizer (vocabulary {meta['vocab_size']}, eos "
          f"{meta['eos_token_id']}; this one: {len(tok)}, {tok.eos_token_id})")
    check(len(train) > 0, f"{WHO}: the dataset has fewer tokens than one sequence of seqLen={cfg.seq_len}")
    if is_main_process():
        worker.log(f"packed {meta['documents']} documents into {len(train)} sequences of {cfg.seq_len} tokens "
                   f"({meta['tokens']} tokens, {meta['dtype']} memory-mapped)")
        worker.metric("train_sequences", len(train))
        worker.metric("processes", world_size())

    worker.phase("loading model")
    set_seed(cfg.seed)
    if base:
        model = load_causal_lm(base, torch.float32, cfg.allow_pickle)
    else:
        model = AutoModelForCausalLM.from_config(model_config(cfg, tok), dtype=torch.float32)
    if is_main_process():
        worker.metric("parameters", sum(p.numel() for p in model.parameters()))

    args = TrainingArguments(
        output_dir=worker.resume_dir,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        learning_rate=hp["learning_rate"],
        lr_scheduler_type=hp["lr_scheduler"],
        warmup_steps=hp["warmup_steps"],
        weight_decay=hp["weight_decay"],
        adam_beta1=hp["adam_beta1"],
        adam_beta2=hp["adam_beta2"],
        adam_epsilon=hp["adam_epsilon"],
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch",
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 500,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **device_args(worker),
        **strategy_args(WHO, cfg, worker),
    )
    tokens_per_step = cfg.seq_len * cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size()
    progress = progress_callback(worker, tokens_per_step)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=default_data_collator,
                      processing_class=tok, callbacks=[progress])

    # --- loop (resuming from the newest checkpoint of this step key, if any) ---
    resume = last_checkpoint(worker.resume_dir)
    if resume and is_main_process():
        worker.log(f"resuming from {resume}")
    worker.phase("training")
    result = trainer.train(resume_from_checkpoint=resume)

    # --- save ---
    worker.phase("saving")
    model.config.use_cache = True
    save_trained_model(trainer, cfg, worker)
    remove_training_args(worker.output)
    report_train_metrics(worker, result.metrics)
    if is_main_process():
        for name in ("first_loss", "last_loss"):
            if getattr(progress, name) is not None:
                worker.metric(name, getattr(progress, name))


if __name__ == "__main__":
    main()
