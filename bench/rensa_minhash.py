"""The rensa side of bench/minhash-vs-rensa.ts: rensa's MinHash hashing + LSH alone, per core.

    python bench/rensa_minhash.py CORPUS.jsonl [THRESHOLD] [REPEATS]

The corpus is read and cut into word 5-gram shingles (simplified text, as anneal and datatrove do)
before the clock starts: only rensa's own work is timed, on one thread (RAYON_NUM_THREADS=1), in CPU
seconds of this process. Two ways of driving rensa are timed and the faster one counts:

- per document: RMinHash(112, seed).update(shingles), then RMinHashLSH (14 bands) query, verify the
  candidates by estimated Jaccard >= threshold, insert when no candidate passes (keep the first);
- batched: RMinHash.digest_matrix_from_token_byte_sets (all signatures in one call) and
  RMinHashLSH.insert_matrix_and_query_duplicate_flags (all LSH work in one call, no verification).

Each mode runs REPEATS times (default 3) and its fastest run is reported. Prints one JSON line: docs,
and for each mode CPU seconds, wall seconds and the removed row numbers.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import unicodedata

os.environ.setdefault("RAYON_NUM_THREADS", "1")

from rensa import RMinHash, RMinHashLSH  # noqa: E402

NUM_PERM, BANDS, NGRAM, SEED = 112, 14, 5, 1
_punct = re.compile(r"[^\w\s]+|_+")


def shingles(text: str) -> list[str]:
    words = _punct.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()
    if not words:
        return []
    width = min(NGRAM, len(words))
    return [" ".join(words[i : i + width]) for i in range(len(words) - width + 1)]


def timed(fn, repeats: int):
    best = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        removed = fn()
        run = {"cpu_seconds": time.process_time() - c0, "seconds": time.perf_counter() - w0, "removed": removed}
        if best is None or run["cpu_seconds"] < best["cpu_seconds"]:
            best = run
    return best


def per_document(docs: list[list[str]], threshold: float) -> list[int]:
    lsh = RMinHashLSH(threshold, NUM_PERM, BANDS)
    mins: list[RMinHash] = []
    removed: list[int] = []
    for i, sh in enumerate(docs):
        m = RMinHash(NUM_PERM, SEED)
        m.update(sh)
        mins.append(m)
        if any(mins[c].jaccard(m) >= threshold for c in lsh.query(m)):
            removed.append(i)
        else:
            lsh.insert(i, m)
    return removed


def batched(docs: list[list[bytes]], threshold: float) -> list[int]:
    matrix = RMinHash.digest_matrix_from_token_byte_sets(docs, NUM_PERM, SEED)
    lsh = RMinHashLSH(threshold, NUM_PERM, BANDS)
    flags = lsh.insert_matrix_and_query_duplicate_flags(matrix, 0)
    return [i for i, f in enumerate(flags) if f]


def main() -> None:
    corpus = sys.argv[1]
    threshold = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with open(corpus, encoding="utf-8") as f:
        docs = [shingles(json.loads(line)["text"]) for line in f if line.strip()]
    as_bytes = [[s.encode("utf-8") for s in d] for d in docs]
    out = {"docs": len(docs)}
    out["per_document"] = timed(lambda: per_document(docs, threshold), repeats)
    out["batched"] = timed(lambda: batched(as_bytes, threshold), repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
