"""decontaminate-semantic: flags training rows whose question embedding has cosine >= threshold (0.8,
Platypus) with a benchmark question, sorts every flagged pair into a review category (review.py) and
removes the flagged rows of the chosen categories (all, by default, as Platypus did).

Run by the engine as `python decontaminate_semantic.py SPEC.json`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from anneal_worker.protocol import Worker, config_from_params, fail  # noqa: E402
from benchmark import read_benchmark  # noqa: E402
from data_io import (QUESTION_FIELDS, DatasetWriter, RemovalLog, RowReader, answer_text, detect_format,  # noqa: E402
                     join_fields, preview, question_text, write_report)
from embed import Embedder, matches_above  # noqa: E402
from review import CATEGORIES, categorize, review_markdown  # noqa: E402


# ---- config (mirrors DecontaminateSemanticParams in steps/data/semantic.ts) ---------------------------
@dataclass
class Config:
    threshold: float = 0.8  # cosine at or above which a (row, benchmark question) pair is flagged
    benchmark: Any = field(default_factory=lambda: {"question": "question"})  # {question, choices?, answer?}, or one per benchmark
    fields: list[str] | None = None  # training text embedded; default the question side
    remove: list[str] = field(default_factory=lambda: list(CATEGORIES))
    duplicateSimilarity: float = 0.9
    model: str | None = None
    batchSize: int = 64
    onInvalid: str = "error"
    examples: int = 5


def main() -> None:
    w = Worker.from_argv()
    cfg = config_from_params(Config, w.params)
    paths = w.inputs.get("benchmarks") or []
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        fail("decontaminate-semantic needs at least one benchmark dataset (input benchmarks is empty)")
    mappings = cfg.benchmark if isinstance(cfg.benchmark, list) else [cfg.benchmark] * len(paths)
    if len(mappings) != len(paths):
        fail(f"param benchmark lists {len(mappings)} field mappings for {len(paths)} benchmarks: give one per benchmark, or one for all")
    items = [it for p, m in zip(paths, mappings) for it in read_benchmark(p, m)]

    data = w.inputs["data"]
    fmt = detect_format(data, cfg.onInvalid)
    fields = cfg.fields or QUESTION_FIELDS[fmt]
    # validate every row before loading the model: a bad line fails in seconds, not after the load
    for _ in RowReader(data, fmt, cfg.onInvalid):
        pass
    embedder = Embedder(cfg.model, w.gpus, cfg.batchSize, int(w.spec.get("devices", {}).get("cpus", 1)))
    w.log(f"embedding on {embedder.device}")
    bench = embedder.encode([it.question for it in items])
    reader = RowReader(data, fmt, cfg.onInvalid)
    train = embedder.encode_stream((join_fields(r.row, fields) for r in reader), 4096,
                                   lambda done: w.progress(done, None, "rows embedded"))
    hits: dict[int, list[tuple[int, float]]] = {}
    for row, item, cos in matches_above(train, bench, cfg.threshold):
        hits.setdefault(row, []).append((item, cos))

    remove_set = set(cfg.remove)
    out = DatasetWriter(w.output, fmt)
    log = RemovalLog(w.output, cfg.examples)
    pairs: list[dict[str, Any]] = []
    for r in RowReader(data, fmt, cfg.onInvalid):
        flagged = hits.get(r.index)
        if not flagged:
            out.write(r.row)
            continue
        tq = question_text(r.row, fmt)
        ta = answer_text(r.row, fmt)
        best = None
        remove = False
        for item, cos in sorted(flagged):
            it = items[item]
            v = categorize(tq, ta, it.question, it.answer, cfg.duplicateSimilarity)
            removed = v["category"] in remove_set
            pair = {"train": r.at, "trainQuestion": preview(tq, 300), "benchmark": it.benchmark, "item": it.at,
                    "benchQuestion": preview(it.question, 300), "benchAnswer": it.answer,
                    "score": round(cos, 4), **v, "removed": removed}
            pairs.append(pair)
            remove = remove or removed
            if best is None or pair["score"] > best["score"]:
                best = pair
        if remove and best is not None:
            log.remove(best["category"], r.at, tq, benchmark=best["benchmark"], item=best["item"], score=best["score"])
        else:
            out.write(r.row)
    rows = out.close()
    log.close()
    by_cat = {c: sum(1 for p in pairs if p["category"] == c) for c in CATEGORIES}
    names = list(dict.fromkeys(it.benchmark for it in items))
    write_report(w.output, {
        "step": "decontaminate-semantic", "method": "semantic", "threshold": cfg.threshold, "format": fmt,
        "device": embedder.device, "input": reader.rows, "kept": rows, "removed": log.total,
        "benchmarks": [{"name": n, "items": sum(1 for it in items if it.benchmark == n)} for n in names],
        "flaggedPairs": len(pairs), "byCategory": by_cat,
        "invalidSkipped": reader.skipped, "invalidExamples": reader.examples, "pairs": pairs,
    })
    with open(os.path.join(w.output, "review.md"), "w", encoding="utf-8") as f:
        f.write(review_markdown(f"Decontamination review (embedding cosine >= {cfg.threshold})", pairs))
    w.metric("rows_in", reader.rows)
    w.metric("rows_out", rows)
    w.metric("removed", log.total)
    w.metric("flagged_pairs", len(pairs))
    for c in CATEGORIES:
        w.metric(f"flagged.{c}", by_cat[c])


if __name__ == "__main__":
    main()
