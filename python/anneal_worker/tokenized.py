"""A tokenized corpus as memory-mapped token shards, the layout nanoGPT trains from.

A tokenized directory holds `shard-00000.bin`, `shard-00001.bin`, ... (raw little-endian token ids,
uint16 when the vocabulary fits in 65,536 ids, else uint32) and `tokens.json`, written last:
{"format": "anneal-tokens", "version", "dtype", "tokens", "documents", "shards": [{"file", "tokens"}],
"eos_token_id", "vocab_size"}. The stream is every document's tokens followed by the end-of-text token.

Tokenizing streams: rows are read one at a time (datasets.iter_checked_rows), encoded in batches and
appended to the current shard, so neither the corpus nor its tokens are ever held in memory. The
directory is built under a temporary name and renamed into place, so a crash leaves no half corpus
that looks complete. Training reads fixed-length blocks through np.memmap: the OS pages in what a
batch touches.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Iterable

FORMAT = "anneal-tokens"
VERSION = 1
META = "tokens.json"
# tokens per shard: 256 MiB of uint16 (nanoGPT's FineWeb shards hold 100M tokens)
SHARD_TOKENS = 1 << 27
# documents encoded per tokenizer call
BATCH_DOCUMENTS = 512
# tokens buffered before a write
FLUSH_TOKENS = 1 << 20


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def is_tokenized(path: str) -> bool:
    return os.path.isfile(os.path.join(path, META))


def read_meta(path: str, who: str) -> dict[str, Any]:
    from .protocol import fail

    meta_path = os.path.join(path, META)
    if not os.path.isfile(meta_path):
        fail(f"{who}: {path} is not a tokenized corpus (no {META})")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        fail(f"{who}: {meta_path}: not an {FORMAT} v{VERSION} corpus")
    for shard in meta["shards"]:
        file = os.path.join(path, shard["file"])
        size = os.path.getsize(file) if os.path.isfile(file) else -1
        width = 2 if meta["dtype"] == "uint16" else 4
        if size != shard["tokens"] * width:
            fail(f"{who}: {file}: expected {shard['tokens']} tokens ({shard['tokens'] * width} bytes), found {size} bytes")
    return meta


def tokenize_to_shards(texts: Iterable[str], tok: Any, out: str, shard_tokens: int = SHARD_TOKENS) -> dict[str, Any]:
    """Encodes documents (without special tokens, each followed by eos) into token shards at `out`.
    Returns the metadata. `out` is missing or an empty directory; it appears complete or not at all."""
    import numpy as np

    eos = tok.eos_token_id
    vocab = len(tok)
    dtype = token_dtype(vocab)
    staging = f"{out}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    shards: list[dict[str, Any]] = []
    state = {"file": None, "in_shard": 0, "tokens": 0, "documents": 0}
    pending: list[int] = []

    def open_shard() -> None:
        name = f"shard-{len(shards):05d}.bin"
        shards.append({"file": name, "tokens": 0})
        state["file"] = open(os.path.join(staging, name), "wb")
        state["in_shard"] = 0

    def write(ids: list[int]) -> None:
        array = np.asarray(ids, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() >= 1 << (16 if dtype == "uint16" else 32)):
            raise ValueError(f"token id out of range for {dtype}")
        array = array.astype(dtype)
        start = 0
        while start < array.size:
            if state["file"] is None or state["in_shard"] >= shard_tokens:
                if state["file"] is not None:
                    close_shard()
                open_shard()
            n = min(shard_tokens - state["in_shard"], array.size - start)
            array[start:start + n].tofile(state["file"])
            state["in_shard"] += n
            shards[-1]["tokens"] += n
            start += n
        state["tokens"] += array.size

    def close_shard() -> None:
        f = state["file"]
        f.flush()
        os.fsync(f.fileno())
        f.close()
        state["file"] = None

    def encode(batch: list[str]) -> None:
        for ids in tok(batch, add_special_tokens=False)["input_ids"]:
            pending.extend(ids)
            pending.append(eos)
        state["documents"] += len(batch)
        if len(pending) >= FLUSH_TOKENS:
            write(pending)
            pending.clear()

    try:
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= BATCH_DOCUMENTS:
                encode(batch)
                batch = []
        if batch:
            encode(batch)
        write(pending)
        if state["file"] is not None:
            close_shard()
    except BaseException:  # a bad row (SystemExit from fail), a kill: leave nothing behind
        if state["file"] is not None:
            state["file"].close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    meta = {
        "format": FORMAT, "version": VERSION, "dtype": dtype, "tokens": state["tokens"],
        "documents": state["documents"], "shards": shards, "eos_token_id": eos, "vocab_size": vocab,
    }
    with open(os.path.join(staging, META), "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.rename(staging, out)  # onto a missing or empty directory (a step's output)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another rank or run finished it first
        if not is_tokenized(out):
            raise
    return meta


def token_blocks(path: str, seq_len: int, who: str):
    """A map-style torch Dataset of the corpus cut into `seq_len`-token blocks (the remainder dropped),
    each {"input_ids", "labels"}, read through np.memmap."""
    import numpy as np
    import torch

    meta = read_meta(path, who)
    maps = [np.memmap(os.path.join(path, s["file"]), dtype=meta["dtype"], mode="r") for s in meta["shards"] if s["tokens"]]
    starts = np.cumsum([0] + [m.size for m in maps])

    class TokenBlocks(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return int(meta["tokens"]) // seq_len

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            if not 0 <= i < len(self):
                raise IndexError(i)
            lo, hi = i * seq_len, (i + 1) * seq_len
            parts = []
            s = int(np.searchsorted(starts, lo, side="right")) - 1
            while lo < hi:
                end = min(hi, int(starts[s + 1]))
                parts.append(maps[s][lo - starts[s]:end - starts[s]])
                lo = end
                s += 1
            block = torch.from_numpy(np.concatenate(parts).astype(np.int64))
            return {"input_ids": block, "labels": block.clone()}

    return TokenBlocks(), meta
