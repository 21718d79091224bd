"""Loads a LoRA adapter onto its bitsandbytes 4-bit base with PEFT, as a QLoRA user would, and compares
the adapted model with the base alone on one prompt.

Usage: python qlora_load.py BASE_DIR ADAPTER_DIR
  ->  {"base_linear": class of a base layer, "lora_layers": LoRA-wrapped modules, "lora_b_norm": |B| summed,
       "max_logit_diff": max |adapted - base| logits, "finite": all logits finite}
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_dir, adapter_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(base_dir)
ids = tok("Lesson 231: the grass is", return_tensors="pt", add_special_tokens=False).input_ids
base = AutoModelForCausalLM.from_pretrained(base_dir, device_map="cpu")
base_linear = type(base.model.layers[0].self_attn.q_proj).__name__
with torch.no_grad():
    before = base(input_ids=ids).logits
model = PeftModel.from_pretrained(base, adapter_dir)
lora = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(getattr(m, "lora_A")) > 0]
b_norm = sum(float(p.detach().abs().sum()) for n, p in model.named_parameters() if "lora_B" in n)
with torch.no_grad():
    after = model(input_ids=ids).logits
print(json.dumps({
    "base_linear": base_linear,
    "lora_layers": len(lora),
    "lora_b_norm": b_norm,
    "max_logit_diff": float((after - before).abs().max()),
    "finite": bool(torch.isfinite(after).all()),
}))
