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
import resource
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


def minhashes(texts: list[str]) -> list[MinHash]:
    out = []
    for t in texts:
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch(shingles(t))
        out.append(m)
    return out


def signatures(texts: list[str]) -> np.ndarray:
    """Hash values only: what a pool worker sends back (cheaper to pickle than MinHash objects)."""
    return np.stack([m.hashvalues for m in minhashes(texts)])


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
        mins = [MinHash(num_perm=NUM_PERM, seed=SEED, hashvalues=s, scheme="affine32") for s in sigs]
    else:
        mins = minhashes(texts)
    t_sign = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, params=(BANDS, ROWS))
    removed: list[int] = []
    matched: list[int] = []
    for i, m in enumerate(mins):
        hit = next((c for c in lsh.query(m) if mins[c].jaccard(m) >= threshold), None)
        if hit is not None:
            removed.append(i)
            matched.append(hit)
        else:
            lsh.insert(i, m)
    os.makedirs(out_dir, exist_ok=True)
    drop = set(removed)
    with open(os.path.join(out_dir, "data.jsonl"), "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            if i not in drop:
                f.write(json.dumps(r) + "\n")
    t1 = time.perf_counter()
    # CPU time of this process and its (joined) pool workers: throughput per core, whatever the load
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    print(json.dumps({"seconds": t1 - t0, "cpu_seconds": cpu, "sign_seconds": t_sign - t0, "docs": len(rows),
                      "removed": removed, "matched": matched}))


if __name__ == "__main__":
    main()
