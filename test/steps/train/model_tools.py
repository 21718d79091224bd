"""Inspecting models for the training-step tests; prints one JSON line.

  diff A B                  tensors of two model dirs: {"changed": [...], "same": [...]} (by name)
  adapter DIR               tensor names in an adapter, and whether each lora_B is non-zero
  generate DIR PROMPT       loads with from_pretrained, generates 8 tokens: {"text", "new_tokens"}
  margin DATASET DIR...     per model: mean over rows of log p(chosen|prompt) - log p(rejected|prompt)
"""
from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import load_file


def tensors(d: str) -> dict:
    out = {}
    for n in sorted(os.listdir(d)):
        if n.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, n)))
    return out


def diff(a: str, b: str) -> dict:
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb), (sorted(set(ta) ^ set(tb)))
    changed = [k for k in ta if not torch.equal(ta[k], tb[k])]
    return {"changed": sorted(changed), "same": sorted(k for k in ta if k not in changed)}


def maxdiff(a: str, b: str) -> dict:
    """The largest absolute difference between two models' tensors, and the largest tensor magnitude."""
    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb), (sorted(set(ta) ^ set(tb)))
    worst = max(ta, key=lambda k: (ta[k].float() - tb[k].float()).abs().max().item())
    return {
        "max_abs": (ta[worst].float() - tb[worst].float()).abs().max().item(), "tensor": worst,
        "max_magnitude": max(t.float().abs().max().item() for t in ta.values()),
    }


def adapter(d: str) -> dict:
    t = tensors(d)
    return {"names": sorted(t), "nonzero_b": sorted(k for k, v in t.items() if "lora_B" in k and v.abs().sum() > 0)}


def generate(d: str, prompt: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:]
    return {"text": tok.decode(new), "new_tokens": int(new.numel())}


def logp(model, tok, prompt: str, answer: str) -> float:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    lp = logits.gather(1, targets[:, None])[:, 0]
    return float(lp[len(p) - 1:].sum())


def margin(dataset: str, *dirs: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [json.loads(l) for l in open(os.path.join(dataset, "data.jsonl"))]
    out = []
    for d in dirs:
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d).eval()
        m = [logp(model, tok, r["prompt"], r["chosen"]) - logp(model, tok, r["prompt"], r["rejected"]) for r in rows]
        out.append(sum(m) / len(m))
    return {"margins": out}


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    result = {"diff": diff, "maxdiff": maxdiff, "adapter": adapter, "generate": generate, "margin": margin}[cmd](*args)
    print(json.dumps(result))
