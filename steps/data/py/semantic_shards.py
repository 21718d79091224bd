"""The shard stages of dedup-semantic (steps/data/semantic.ts runs them as shard tasks):

- `serve MODEL BATCH`: loads the model once, then for each task directory read on stdin embeds the texts
  of that piece (TASK_DIR/texts.jsonl, one JSON string a line) into TASK_DIR/emb.f32 (float32 rows, 384
  a row, little-endian); one such process serves every task a worker process runs. The result does not depend on
  how the input was cut: torch runs on one intra-op thread and a batch only ever holds texts of one
  token length (no padding), so each text's embedding is the same bits whatever else is in the piece.
- `greedy STAGE_DIR OUT_DIR THRESHOLD KEEP IDS...`: the greedy similarity pass over every piece's
  embeddings in input order (embed.greedy_dedup), writing OUT_DIR/<id>.jsonl, one decision a row of
  that piece: null keeps it, {"duplicateOf": "file:line", "cosine": c} removes it. The embeddings are
  read through memory maps and the kept ones written to a file-backed array: its own memory is about
  40 bytes a row (the visiting order, the decisions) plus fixed-size similarity blocks.
  A line may also be a JSON request {"dir": TASK_DIR, "benchmarks": [...], "mappings": [...]}: the
  benchmark questions of decontaminate-semantic, embedded into TASK_DIR/bench.f32 by the same process
  (so the benchmark-matching stage needs no model); bad benchmark rows answer {"error", "data": true}.
- `decontaminate STAGE_DIR OUT_DIR CONFIG.json`: the benchmark side of decontaminate-semantic: matches
  the benchmark questions' embeddings (the embedding stage's bench.f32) against every piece's
  embeddings, categorizes each flagged pair and writes one decision a row of each piece and the pairs,
  streamed to pairs.jsonl (never a list of them all: a leak can flag most rows). It loads no model.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

DIM = 384


class PieceEmbedder:
    """all-MiniLM-L6-v2 (or `model`) on one intra-op thread; embeds one piece's texts by token length."""

    def __init__(self, model: str, batch: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        from embed import model_dir

        torch.set_num_threads(1)
        self.device = "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") and torch.cuda.is_available() else "cpu"
        self.st = SentenceTransformer(model_dir(model or None), device=self.device)
        self.batch = batch

    def embed(self, task_dir: str) -> None:
        with open(os.path.join(task_dir, "texts.jsonl"), encoding="utf-8") as f:
            texts = [json.loads(line) for line in f if line.strip()]
        write_f32(self.encode(texts), os.path.join(task_dir, "emb.f32"))

    def embed_benchmarks(self, task_dir: str, paths: list[str], mappings: list[dict]) -> int:
        items = read_items(paths, mappings)
        write_f32(self.encode([it.question for it in items]), os.path.join(task_dir, "bench.f32"))
        return len(items)

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        limit = self.st.get_max_seq_length() or 512
        ids_of = self.st.tokenizer(texts, truncation=True, max_length=limit)["input_ids"] if texts else []
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(ids_of):
            by_len.setdefault(len(ids), []).append(i)
        for n in sorted(by_len):
            rows = by_len[n]
            for s in range(0, len(rows), self.batch):
                part = rows[s : s + self.batch]
                e = self.st.encode([texts[i] for i in part], batch_size=len(part), convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
                out[part] = np.asarray(e, dtype=np.float32)
        return out


def write_f32(a: np.ndarray, path: str) -> None:
    tmp = path + ".tmp"
    a.astype("<f4").tofile(tmp)
    os.replace(tmp, path)


def read_items(paths: list[str], mappings: list[dict]) -> list:
    """Every benchmark's items, in input order (benchmark.read_benchmark)."""
    from benchmark import read_benchmark

    return [it for p, m in zip(paths, mappings) for it in read_benchmark(p, m)]


def serve(model: str, batch: int) -> None:
    """Loads the model once, then embeds the task directory of each stdin line, answering one JSON line
    each ({"device": ...} or {"error": ...}); ends at end of input (its Node process is gone)."""
    parent = os.getppid()

    def orphaned() -> None:  # the Node process was killed (-9): stop now, not after the current piece
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    emb = PieceEmbedder(model, batch)
    for line in sys.stdin:
        d = line.strip()
        if not d:
            continue
        said = io.StringIO()
        try:
            if d.startswith("{"):
                req = json.loads(d)
                with contextlib.redirect_stderr(said):
                    n = emb.embed_benchmarks(req["dir"], req["benchmarks"], req["mappings"])
                msg = {"device": emb.device, "items": n}
            else:
                emb.embed(d)
                msg = {"device": emb.device}
        except SystemExit:  # protocol.fail on a bad benchmark row: a retry cannot help
            last = (said.getvalue().strip().split("\n") or [""])[-1]
            msg = {"error": last.removeprefix("error: "), "data": True}
        except Exception as e:  # reported to the task, which fails (and is retried alone)
            msg = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


class PieceRows:
    """Every piece's embeddings (STAGE_DIR/<id>/emb.f32) as one (n, DIM) array, read through memory maps:
    `rows[ids]` gathers those rows, so the whole corpus is never in memory at once."""

    def __init__(self, stage_dir: str, ids: list[str]) -> None:
        self.maps = []
        for i in ids:
            f = os.path.join(stage_dir, i, "emb.f32")
            rows = os.path.getsize(f) // (4 * DIM)
            self.maps.append(np.memmap(f, dtype="<f4", mode="r", shape=(rows, DIM)) if rows > 0 else np.zeros((0, DIM), dtype=np.float32))
        self.counts = [m.shape[0] for m in self.maps]
        self.starts = np.cumsum([0] + self.counts)
        self.shape = (int(self.starts[-1]), DIM)

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(ids), DIM), dtype=np.float32)
        piece = np.searchsorted(self.starts, ids, side="right") - 1
        for p in np.unique(piece):
            at = piece == p
            out[at] = self.maps[p][ids[at] - self.starts[p]]
        return out


def greedy(stage_dir: str, out_dir: str, threshold: float, keep: str, ids: list[str]) -> None:
    """The greedy pass in bounded memory: embeddings are read from the pieces' files (PieceRows) and the
    kept rows' embeddings go to a file-backed array (removed at the end); in memory, a few numbers a row."""
    from embed import greedy_dedup

    rows = PieceRows(stage_dir, ids)
    n = rows.shape[0]
    lengths = np.zeros(n, dtype=np.int64)
    for p, i in enumerate(ids):
        with open(os.path.join(stage_dir, i, "rows.json"), encoding="utf-8") as f:
            lengths[rows.starts[p] : rows.starts[p + 1]] = json.load(f)["lengths"]
    order = np.argsort(-lengths, kind="stable") if keep == "longest" else np.arange(n)
    del lengths
    os.makedirs(out_dir, exist_ok=True)
    kept_file = os.path.join(out_dir, "kept.f32")
    kept_emb = np.memmap(kept_file, dtype="<f4", mode="w+", shape=(max(n, 1), DIM))
    try:
        kept, dup_of, score = greedy_dedup(rows, order, threshold, kept_emb=kept_emb)
    finally:
        del kept_emb
        os.remove(kept_file)
    del order
    # the locations of the rows something duplicates, read piece by piece
    targets = np.unique(dup_of[dup_of >= 0])
    where: dict[int, str] = {}
    for p, i in enumerate(ids):
        lo, hi = int(rows.starts[p]), int(rows.starts[p + 1])
        mine = targets[(targets >= lo) & (targets < hi)]
        if len(mine) == 0:
            continue
        with open(os.path.join(stage_dir, i, "rows.json"), encoding="utf-8") as f:
            at = json.load(f)["at"]
        for t in mine.tolist():
            where[t] = at[t - lo]
    for p, i in enumerate(ids):
        with open(os.path.join(out_dir, f"{i}.jsonl"), "w", encoding="utf-8") as f:
            for r in range(int(rows.starts[p]), int(rows.starts[p + 1])):
                d = None if kept[r] else {"duplicateOf": where[int(dup_of[r])], "cosine": round(float(score[r]), 4)}
                f.write(json.dumps(d) + "\n")
    print(json.dumps({"rows": n, "removed": int(n - kept.sum())}))


def _pair_line(pair: dict) -> str:
    """A pair as one JSON line, written as the n-gram step's (JSON.stringify) are: compact, UTF-8, and
    a whole float without ".0" (1.0 -> 1)."""
    return json.dumps({k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in pair.items()},
                      ensure_ascii=False, separators=(",", ":")) + "\n"


def decontaminate(stage_dir: str, out_dir: str, config_file: str) -> None:
    """Finds every (row, item) pair at cosine >= threshold between the pieces' embeddings and the
    benchmark questions' (embedded by the embedding stage: cfg["benchDir"]/bench.f32), categorizes each
    pair (review.py) and writes OUT_DIR/<id>.jsonl (null keeps a row; {"rule": category, "benchmark",
    "item", "score"} removes it) and OUT_DIR/pairs.jsonl, one pair a line in input order, as it finds
    them; it prints the counts per category and the first cfg["examples"] pairs (semantic.ts makes
    flagged.jsonl, report.json and review.md of them)."""
    from data_io import preview
    from embed import matches_above
    from review import CATEGORIES, categorize

    with open(config_file, encoding="utf-8") as f:
        cfg = json.load(f)
    items = read_items(cfg["benchmarks"], cfg["mappings"])
    bench = np.fromfile(os.path.join(cfg["benchDir"], "bench.f32"), dtype="<f4").reshape(-1, DIM)
    if bench.shape[0] != len(items):
        raise SystemExit(f"the benchmarks changed since they were embedded ({bench.shape[0]} embeddings, {len(items)} items)")
    remove_set = set(cfg["remove"])
    max_examples = cfg["examples"]
    examples: list[dict] = []
    by_category = {c: 0 for c in CATEGORIES}
    total = 0
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "pairs.jsonl"), "w", encoding="utf-8") as pairs_out:
        for pid in cfg["ids"]:
            d = os.path.join(stage_dir, pid)
            train = np.fromfile(os.path.join(d, "emb.f32"), dtype="<f4").reshape(-1, DIM)
            with open(os.path.join(d, "rows.json"), encoding="utf-8") as f:
                meta = json.load(f)
            hits: dict[int, list[tuple[int, float]]] = {}
            for row, item, cos in matches_above(train, bench, cfg["threshold"]):
                hits.setdefault(row, []).append((item, cos))
            with open(os.path.join(d, "qa.jsonl"), encoding="utf-8") as f:
                qa = [json.loads(line) for line in f if line.strip()]
            with open(os.path.join(out_dir, f"{pid}.jsonl"), "w", encoding="utf-8") as out:
                for r in range(train.shape[0]):
                    flagged = hits.get(r)
                    decision = None
                    if flagged:
                        tq, ta = qa[r]
                        best = None
                        remove = False
                        for item, cos in sorted(flagged):
                            it = items[item]
                            v = categorize(tq, ta, it.question, it.answer, cfg["duplicateSimilarity"])
                            removed = v["category"] in remove_set
                            pair = {"train": meta["at"][r], "trainQuestion": preview(tq, 300), "benchmark": it.benchmark,
                                    "item": it.at, "benchQuestion": preview(it.question, 300), "benchAnswer": it.answer,
                                    "score": round(cos, 4), **v, "removed": removed}
                            pairs_out.write(_pair_line(pair))
                            total += 1
                            by_category[pair["category"]] += 1
                            if len(examples) < max_examples:
                                examples.append(pair)
                            remove = remove or removed
                            if best is None or pair["score"] > best["score"]:
                                best = pair
                        if remove and best is not None:
                            decision = {"rule": best["category"], "benchmark": best["benchmark"], "item": best["item"],
                                        "score": best["score"]}
                    out.write(json.dumps(decision, ensure_ascii=False) + "\n")
    names = list(dict.fromkeys(it.benchmark for it in items))
    # the stage's result (its completion marker): counts and examples only, however many pairs
    print(json.dumps({
        "benchmarks": [{"name": n, "items": sum(1 for it in items if it.benchmark == n)} for n in names],
        "flaggedPairs": total,
        "byCategory": by_category,
        "examples": examples,
    }, ensure_ascii=False))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "serve":
        serve(a[1], int(a[2]))
    elif a and a[0] == "greedy":
        greedy(a[1], a[2], float(a[3]), a[4], a[5:])
    elif a and a[0] == "decontaminate":
        decontaminate(a[1], a[2], a[3])
    else:
        sys.exit("usage: semantic_shards.py serve MODEL BATCH | decontaminate STAGE_DIR OUT_DIR CONFIG.json | greedy STAGE_DIR OUT_DIR THRESHOLD KEEP IDS...")
