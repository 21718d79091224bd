"""Runs llama.cpp's own HF -> GGUF converter (convert_hf_to_gguf.py), unchanged but for two fixes.

    python convert.py LLAMA_CPP_SRC -- MODEL_DIR --outfile OUT.gguf --outtype f16

The converter names a BPE tokenizer's pre-tokenizer (the regex that splits text before BPE) by
hashing how the tokenizer encodes a test string, and knows only the hashes of published models: a
tokenizer that anneal trained (steps/train/tokenizer: byte-level BPE with GPT-2's split regex) has
its own vocabulary, hence an unknown hash, and the converter stops with "BPE pre-tokenizer was not
recognized". When, and only when, that happens, this reads the pre-tokenizer from tokenizer.json and
names the llama.cpp pre-tokenizer that does the same split; any other pre-tokenizer is a clear error.
The Phi converter assumes the published models' MLP width (4 x hidden); see phi2_parameters.
"""
from __future__ import annotations

import json
import os
import runpy
import sys


def pre_tokenizer_of(model_dir: str) -> str | None:
    """llama.cpp's name for the split that tokenizer.json's pre_tokenizer does, or None."""
    try:
        with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
            pre = json.load(f).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return None
    # GPT-2's byte-level split (the default of tokenizers' ByteLevel), without a prefix space
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    return None


def main() -> None:
    src, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: convert.py LLAMA_CPP_SRC -- CONVERTER ARGS..."
    # the converter's own gguf-py and `conversion` package, ahead of any installed gguf
    sys.path[:0] = [os.path.join(src, "gguf-py"), src]
    import conversion.base as base

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            name = pre_tokenizer_of(str(self.dir_model))
            if name is None:
                sys.stderr.write(
                    f"quantize: {self.dir_model}: the tokenizer's pre-tokenizer is neither one llama.cpp knows by hash "
                    "nor byte-level BPE with GPT-2's split; GGUF conversion is not supported for it\n")
                sys.exit(3)
            base.logger.info(f"pre-tokenizer not in llama.cpp's table; tokenizer.json's is GPT-2's byte-level split: {name!r}")
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    # The Phi (phi-1/1.5/2) converter writes feed_forward_length = 4 x hidden_size, true of the published
    # models; anneal's Phi configs may use another intermediate_size, and llama.cpp then refuses the file
    # ("tensor 'blk.0.ffn_down.weight' has wrong shape"). Write the config's own value.
    from conversion import phi

    original_phi2 = phi.Phi2Model.set_gguf_parameters

    def phi2_parameters(self) -> None:
        real = self.find_hparam(["intermediate_size", "n_inner"], optional=True)
        writer = self.gguf_writer
        if real:
            add = writer.add_feed_forward_length
            writer.add_feed_forward_length = lambda _n: add(int(real))
        try:
            original_phi2(self)
        finally:
            writer.__dict__.pop("add_feed_forward_length", None)

    phi.Phi2Model.set_gguf_parameters = phi2_parameters
    script = os.path.join(src, "convert_hf_to_gguf.py")
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
