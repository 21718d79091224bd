"""Builds the quantize tests' models into OUT, from the training tests' shared fixtures (FIXTURES):

  llama/      a 2-layer Llama, hidden 256 (k-quants need rows of 256), the fixtures' byte-level BPE
              tokenizer (vocab 320), trained for 150 steps on lessons 0-199 so that its
              perplexity means something (a random model predicts ~uniformly: every quantization would
              "match" it)
  phi/        a 2-layer Phi (phi-1.5's architecture) of the same size, random init (conversion only)
  held-out/   lessons 200-239 as a text dataset: the text perplexity is measured on
  source-ids.json
              what llama/'s tokenizer, loaded back as a user loads it, makes of the sentences in
              TOKENIZED (no special tokens): the GGUF test compares llama.cpp's tokenization with it,
              without a Python start-up of its own to import transformers (~6 s)

Usage: python make_model.py FIXTURES OUT
"""
from __future__ import annotations

import json
import os
import sys

from anneal_worker.datasets import write_dataset

TOKENIZED = ["Lesson 230: the snow is often white."]


def main(fixtures: str, out: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PhiConfig, PhiForCausalLM

    torch.set_num_threads(2)
    with open(os.path.join(fixtures, "text", "data.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    train, held_out = texts[:200], texts[200:]
    write_dataset(os.path.join(out, "held-out"), "text", [{"text": t} for t in held_out])

    tok = AutoTokenizer.from_pretrained(os.path.join(fixtures, "tokenizer"))
    common = dict(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**common))
    ids = tok("\n\n".join(train), add_special_tokens=False, return_tensors="pt").input_ids[0]
    seq, batch = 64, 8
    starts = torch.arange(0, len(ids) - seq - 1, seq // 2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(150):
        pick = starts[torch.randint(len(starts), (batch,), generator=gen)]
        x = torch.stack([ids[s:s + seq] for s in pick])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    print(f"final training loss {loss.item():.3f}", file=sys.stderr)
    model.save_pretrained(os.path.join(out, "llama"))
    tok.save_pretrained(os.path.join(out, "llama"))
    saved = AutoTokenizer.from_pretrained(os.path.join(out, "llama"))
    with open(os.path.join(out, "source-ids.json"), "w", encoding="utf-8") as f:
        json.dump({t: saved(t, add_special_tokens=False).input_ids for t in TOKENIZED}, f)

    phi = PhiForCausalLM(PhiConfig(**{k: v for k, v in common.items() if k != "num_key_value_heads"},
                                   resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0))
    phi.save_pretrained(os.path.join(out, "phi"))
    tok.save_pretrained(os.path.join(out, "phi"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
