"""Builds the tiny fixtures the training-step tests share, into DIR:

  text/  instructions/  preferences/  mc/   dataset artifacts (data.jsonl + dataset.json)
  tokenizer/                              a byte-level BPE trained on text/ (vocab 320)
  base/                                   a 2-layer Llama (hidden 32) with that tokenizer, random init
  base-bin/                               the same model with pickle weights only (pytorch_model.bin)

Usage: python make_fixtures.py DIR
"""
from __future__ import annotations

import os
import random
import sys

from anneal_worker.datasets import write_dataset

COLORS = ["red", "blue", "green", "yellow", "black", "white"]
THINGS = ["apple", "sky", "grass", "banana", "coal", "snow"]


def main(out: str) -> None:
    rng = random.Random(0)
    texts = []
    for i in range(240):
        c, t = rng.choice(COLORS), rng.choice(THINGS)
        texts.append({"text": f"Lesson {i}: the {t} is often {c}. We count {i % 7} and {i % 5}. "
                              f"A {c} {t} is a simple example of color in nature."})
    write_dataset(os.path.join(out, "text"), "text", texts)

    pairs = list(zip(THINGS, ["red", "blue", "green", "yellow", "black", "white"]))
    instructions = [{"instruction": f"What color is the {t}?", "output": f"The {t} is {c}."} for t, c in pairs] * 4
    instructions += [{"instruction": "Repeat the word.", "input": w, "output": w} for w in COLORS]
    write_dataset(os.path.join(out, "instructions"), "instruction", instructions)

    prefs = [{"prompt": f"What color is the {t}? ", "chosen": f"The {t} is {c}.", "rejected": f"I do not know {t}."}
             for t, c in pairs] * 2
    write_dataset(os.path.join(out, "preferences"), "preference", prefs)

    mc = [{"question": f"What color is the {t}?", "choices": ["red", "blue", "green", "yellow"],
           "answer": rng.randrange(4)} for t in THINGS * 2]
    write_dataset(os.path.join(out, "mc"), "any", mc)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([r["text"] for r in texts] + [r["output"] for r in instructions], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|pad|>", model_max_length=256)
    fast.save_pretrained(os.path.join(out, "tokenizer"))

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(os.path.join(out, "base"))
    fast.save_pretrained(os.path.join(out, "base"))
    model.save_pretrained(os.path.join(out, "base-bin"), safe_serialization=False)
    fast.save_pretrained(os.path.join(out, "base-bin"))
    # transformers 5 may always write safetensors; make base-bin pickle-only either way
    for name in os.listdir(os.path.join(out, "base-bin")):
        if name.endswith(".safetensors"):
            os.remove(os.path.join(out, "base-bin", name))
    if not any(n.endswith(".bin") for n in os.listdir(os.path.join(out, "base-bin"))):
        torch.save(model.state_dict(), os.path.join(out, "base-bin", "pytorch_model.bin"))


if __name__ == "__main__":
    main(sys.argv[1])
