"""Reloads a quantized Hugging Face directory with transformers, as a user would, and generates.

Usage: python reload.py MODEL_DIR  ->  prints {"linear": class of a quantized layer, "generated": text}
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="cpu")
tok = AutoTokenizer.from_pretrained(model_dir)
ids = tok("Lesson 231: the grass is", return_tensors="pt", add_special_tokens=False).input_ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
print(json.dumps({
    "linear": type(model.model.layers[0].mlp.down_proj).__name__,
    "generated": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
}))
