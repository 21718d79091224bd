"""What the eval step's llama.cpp model (steps/train/eval/llama_lm.py) answers for a GGUF, as JSON on
stdout: a greedy generation stopped at a string, a text tokenized and decoded back, a rolling log-likelihood and the same text's
log-likelihood scored as one continuation after the BOS token (the two must agree while the text fits
the context window), and the error a bad request gets.

Usage: python llama_lm_check.py LLAMA_LOGLIK MODEL.gguf PROMPT
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "steps", "train", "eval"))

from lm_eval.api.instance import Instance  # noqa: E402
from llama_lm import LlamaCppError, LlamaCppLM  # noqa: E402


def main(tool: str, gguf: str, prompt: str) -> None:
    lm = LlamaCppLM(tool, gguf, ctx=256, threads=1)
    try:
        gen = lm.generate_until([Instance("generate_until", {}, (prompt, {"until": ["."], "max_gen_toks": 16}), 0)])[0]
        text = " Lesson 232: the sky is often blue. We count to three."
        rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
        tokens = lm.tok_encode(text, add_special_tokens=False)
        whole = lm._loglikelihood_tokens([(None, [lm.prefix_token_id], tokens)])[0][0]
        decoded = lm.tok_decode(tokens)
        try:
            lm._loglikelihood_tokens([(None, [lm.prefix_token_id], [10 ** 9])])
            bad = None
        except LlamaCppError as e:
            bad = str(e)
        print(json.dumps({"generated": gen, "rolling": rolling, "whole": whole, "text": text, "decoded": decoded, "bad": bad}))
    finally:
        lm.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
