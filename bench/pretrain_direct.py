"""The tiny pretrain of bench/distributed-pretrain.ts without anneal: the same Llama, data packing and
TrainingArguments as steps/train/pretrain/worker.py, written plainly, for `torchrun --nproc-per-node N`.

    python -m torch.distributed.run --standalone --nproc-per-node N bench/pretrain_direct.py TEXT_DIR TOKENIZER_DIR STEPS OUT

Prints (rank 0) one JSON line: {"tokens_per_second", "train_runtime"}.
"""
import json
import os
import sys

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Trainer, TrainingArguments,
                          default_data_collator, set_seed)

SEQ_LEN, MICRO_BATCH, HIDDEN, LAYERS, HEADS, INTERMEDIATE = 64, 8, 64, 2, 4, 256


def main() -> None:
    text_dir, tok_dir, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    stream: list[int] = []
    with open(os.path.join(text_dir, "data.jsonl"), encoding="utf-8") as f:
        for line in f:
            stream.extend(tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"])
            stream.append(tok.eos_token_id)
    blocks = [torch.tensor(stream[i:i + SEQ_LEN]) for i in range(0, len(stream) - SEQ_LEN + 1, SEQ_LEN)]
    train = [{"input_ids": b, "labels": b} for b in blocks]
    set_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, max_position_embeddings=SEQ_LEN, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=MICRO_BATCH, max_steps=steps, learning_rate=3e-4,
                             lr_scheduler_type="cosine", optim="adamw_torch", logging_steps=1, save_strategy="no",
                             seed=0, data_seed=0, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                             use_cpu=True, **({"ddp_backend": "gloo"} if world > 1 else {}))
    result = Trainer(model=model, args=args, train_dataset=train, data_collator=default_data_collator).train()
    if int(os.environ.get("RANK", "0")) == 0:
        runtime = result.metrics["train_runtime"]
        print(json.dumps({"tokens_per_second": steps * SEQ_LEN * MICRO_BATCH * world / runtime, "train_runtime": runtime}))


if __name__ == "__main__":
    main()
