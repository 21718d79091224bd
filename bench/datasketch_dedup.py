"""The datasketch side of bench/minhash-vs-datasketch.ts: MinHash + MinHashLSH dedup of a JSONL corpus
with the same parameters as anneal's (word 5-gram shingles on simplified text, 112 permutations as
14 bands x 8 rows, candidates verified by estimated Jaccard >= threshold, keep the first).

    python bench/datasketch_dedup.py CORPUS.jsonl OUT_DIR PROCESSES [THRESHOLD]

With PROCESSES > 1 the signatures are computed by a multiprocessing pool (datasketch itself is single
threaded); the LSH index is always built in the main process. Prints one JSON line with the timing and
the removed row numbers (0-based).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import unicodedata
from multiprocessing import Pool

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM, BANDS, ROWS, NGRAM, SEED = 112, 14, 8, 5, 1
_punct = re.compile(r"[^\w\s]+|_+")


def shingles(text: str) -> list[bytes]:
    words = _punct.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()
    if not words:
        return []
    width = min(NGRAM, len(words))
    return [" ".join(words[i : i + width]).encode("utf-8") for i in range(len(words) - width + 1)]


def signatures(texts: list[str]) -> np.ndarray:
    out = np.empty((len(texts), NUM_PERM), dtype=np.uint64)
    for i, t in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch(shingles(t))
        out[i] = m.hashvalues
    return out


def main() -> None:
    corpus, out_dir, procs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threshold = float(sys.argv[4]) if len(sys.argv) > 4 else 0.8
    t0 = time.perf_counter()
    with open(corpus, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [r["text"] for r in rows]
    if procs > 1:
        chunk = 2000
        with Pool(procs) as pool:
            sigs = np.concatenate(pool.map(signatures, [texts[i : i + chunk] for i in range(0, len(texts), chunk)]))
    else:
        sigs = signatures(texts)
    t_sign = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, params=(BANDS, ROWS))
    mins = [MinHash(num_perm=NUM_PERM, seed=SEED, hashvalues=s) for s in sigs]
    removed: list[int] = []
    for i, m in enumerate(mins):
        if any(mins[c].jaccard(m) >= threshold for c in lsh.query(m)):
            removed.append(i)
        else:
            lsh.insert(i, m)
    os.makedirs(out_dir, exist_ok=True)
    drop = set(removed)
    with open(os.path.join(out_dir, "data.jsonl"), "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            if i not in drop:
                f.write(json.dumps(r) + "\n")
    t1 = time.perf_counter()
    print(json.dumps({"seconds": t1 - t0, "sign_seconds": t_sign - t0, "docs": len(rows), "removed": removed}))


if __name__ == "__main__":
    main()
