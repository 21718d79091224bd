"""tokenizer: train a byte-level BPE tokenizer on a Text dataset and save it in Hugging Face format.

Run by the engine as `python steps/train/tokenizer/worker.py SPEC.json` (see engine/spec.ts). Byte-level
BPE (GPT-2 / codegen style) never meets an unknown character, so a tokenizer trained on a small corpus
still encodes any text; this is what makes pretraining from scratch possible offline.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from anneal_worker.datasets import read_dataset
from anneal_worker.protocol import Worker, config_from_params
from anneal_worker.training import check, check_positive

WHO = "tokenizer"


@dataclass
class TokenizerConfig:
    # size of the vocabulary, special tokens and the 256 byte symbols included
    vocab_size: int = 1024
    # a merge must occur at least this many times in the corpus
    min_frequency: int = 2
    # end-of-text token, also used as bos/unk; documents are separated by it when pretraining
    eos_token: str = "<|endoftext|>"
    # padding token (kept apart from eos so completion-only losses can still learn to stop)
    pad_token: str = "<|pad|>"
    # longest sequence models using this tokenizer are told to expect
    model_max_length: int = 2048

    def __post_init__(self) -> None:
        check_positive(WHO, self, "vocab_size", "min_frequency", "model_max_length")
        check(self.vocab_size >= 260, f"{WHO}: param vocabSize must be >= 260 (256 bytes + specials), got {self.vocab_size}")
        check(bool(self.eos_token) and bool(self.pad_token) and self.eos_token != self.pad_token,
              f"{WHO}: params eos_token and pad_token must be two different non-empty strings")


def main() -> None:
    worker = Worker.from_argv()
    cfg = config_from_params(TokenizerConfig, worker.params)
    _, rows = read_dataset(worker.inputs["data"], ("text",), f"{WHO}: input 'data'")

    worker.phase("loading torch")  # transformers imports it
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[cfg.eos_token, cfg.pad_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    total = len(rows)

    def texts():
        for i, row in enumerate(rows):
            if i % 1000 == 0:
                worker.progress(i, total, "rows")
            yield row["text"]

    worker.phase("training")
    tok.train_from_iterator(texts(), trainer=trainer, length=total)
    worker.progress(total, total, "rows")

    worker.phase("saving")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=cfg.eos_token,
        eos_token=cfg.eos_token,
        unk_token=cfg.eos_token,
        pad_token=cfg.pad_token,
        model_max_length=cfg.model_max_length,
    )
    fast.save_pretrained(worker.output)
    worker.metric("vocab_size", len(fast))
    worker.metric("rows", total)
    worker.log(f"trained a {len(fast)}-token byte-level BPE on {total} rows into {os.path.basename(worker.output)}")


if __name__ == "__main__":
    main()
