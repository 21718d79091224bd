"""Converts a tiny test model to GGUF with llama.cpp's own converter.

Usage: python to_gguf.py LLAMA_CPP_SRC MODEL_DIR OUT.gguf

The converter recognises a BPE tokenizer by hashing how it splits a probe string; a tokenizer trained
by the test fixtures has no entry in its table, so the pre-tokenizer is named here: the fixtures use
ByteLevel with GPT-2's split regex, which is llama.cpp's "gpt-2".
"""
import runpy
import sys

src, model_dir, out = sys.argv[1:4]
sys.path.insert(0, src)
import conversion.base as base  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [f"{src}/convert_hf_to_gguf.py", model_dir, "--outfile", out, "--outtype", "f32"]
runpy.run_path(f"{src}/convert_hf_to_gguf.py", run_name="__main__")
