"""tokenize: encode a Text corpus into memory-mapped token shards (the `tokens` input of pretrain).

Run by the engine as `python steps/train/tokenize/worker.py SPEC.json` (see engine/spec.ts). Rows are
read one at a time and checked like every dataset input (a bad row names the file and line); each
document's tokens (no special tokens) are followed by the end-of-text token and appended to uint16 (or
uint32 for vocabularies over 65,536) shard files. Nothing is held in memory but one batch of documents.
"""
from __future__ import annotations

from dataclasses import dataclass

from anneal_worker.datasets import iter_checked_rows
from anneal_worker.protocol import Worker, config_from_params
from anneal_worker.tokenized import tokenize_to_shards
from anneal_worker.training import check, check_positive, load_tokenizer, tokenizer_dir_input

WHO = "tokenize"


@dataclass
class TokenizeConfig:
    # tokens per shard file (2^27: 256 MiB of uint16)
    shard_tokens: int = 134_217_728

    def __post_init__(self) -> None:
        check_positive(WHO, self, "shard_tokens")


def main() -> None:
    worker = Worker.from_argv()
    cfg = config_from_params(TokenizeConfig, worker.params)
    tok_dir = worker.inputs.get("tokenizer") or worker.inputs.get("model")
    check(tok_dir is not None, f"{WHO}: give a tokenizer or a model input")
    tokenizer_dir_input(f"{WHO}: input '{'tokenizer' if worker.inputs.get('tokenizer') else 'model'}'", tok_dir)
    rows = iter_checked_rows(worker.inputs["data"], ("text",), f"{WHO}: input 'data'")
    first = next(rows)  # the declared format and the first row fail here, before the tokenizer loads

    worker.phase("loading tokenizer")
    tok = load_tokenizer(tok_dir)
    check(tok.eos_token_id is not None, f"{WHO}: the tokenizer in {tok_dir} has no eos token")

    worker.phase("tokenizing")

    def texts():
        yield first[1]["text"]
        for _, row in rows:
            yield row["text"]

    meta = tokenize_to_shards(texts(), tok, worker.output, cfg.shard_tokens)
    worker.metric("documents", meta["documents"])
    worker.metric("tokens", meta["tokens"])
    worker.metric("shards", len(meta["shards"]))
    worker.log(f"{meta['documents']} documents -> {meta['tokens']} tokens ({meta['dtype']}) in {len(meta['shards'])} shard(s)")


if __name__ == "__main__":
    main()
