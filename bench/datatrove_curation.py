"""The datatrove side of bench/curation-vs-datatrove.ts: clean (Gopher quality filter) + MinHash dedup
(5-grams, 14 buckets x 8 hashes) + 13-gram decontamination over a folder of JSONL parts, with
`workers` local processes (LocalPipelineExecutor, tasks = parts).

    python bench/datatrove_curation.py PARTS_DIR BENCHMARK.jsonl WORK_DIR WORKERS

Three substitutions, said in the bench's output: the installed xxhash refuses str, which datatrove
passes to it, so str is encoded to UTF-8 first (the hash values datatrove intends); datatrove's English word tokenizer needs spaCy, which is not installed, so words are split
on whitespace (what anneal's Gopher rules and n-gram matching use); and NGramsDecontIndexer requires
lighteval only to read lighteval task tables, so the index is built from the benchmark JSONL through
the indexer's own compute_hashes, written where and how its run() writes it; and the JSONL parts are
converted to Parquet before the clock starts (datatrove's JsonlReader needs orjson, also absent), so
datatrove reads and writes Parquet with pyarrow. Prints one JSON line: seconds per stage and
in all, the kept ids (in WORK_DIR/kept.txt) and the peak RSS of the largest worker process. After the
clock, what each stage removed goes to WORK_DIR (write_stages), for the bench's per-stage comparison;
the only change to the timed pipeline for it is MinhashDedupCluster's save_cluster_id.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import datatrove.pipeline.decont.n_grams as n_grams
import datatrove.pipeline.dedup.minhash as dt_minhash
import datatrove.utils.hashes.xxhash as dt_xxhash
import numpy as np
import xxhash
import datatrove.utils.word_tokenizers as word_tokenizers
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.decont import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters import GopherQualityFilter
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter


class WhitespaceTokenizer(word_tokenizers.WordTokenizer):
    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def _whitespace(language: str = "eng") -> WhitespaceTokenizer:
    return WhitespaceTokenizer(language)


word_tokenizers.load_word_tokenizer = _whitespace
n_grams.load_word_tokenizer = _whitespace
dt_minhash.load_word_tokenizer = _whitespace


# the installed xxhash no longer hashes str, which datatrove passes: encode first (same hash values)
dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode("utf-8") if isinstance(data, str) else data)
dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode("utf-8") if isinstance(data, str) else data)
NGramsDecontIndexer._requires_dependencies = []  # lighteval is only needed for its task tables


def write_stages(d, input_names: list[str]) -> None:
    """After the clock: what each stage removed, for the bench's per-stage comparison with anneal.
    WORK_DIR/clean-removed.tsv: id, the GopherQualityFilter reason (recomputed on the docs the clean
    stage did not write); dedup.tsv: id, minhash cluster id, 1 if MinhashDedupFilter removed it, for
    every document in a cluster; after-dedup.txt: the ids the dedup filter let through. The .remove and
    .clusters files index documents by position in task `rank`'s input, i.e. the rank-th clean file."""
    kept_clean: set[str] = set()
    clean_files = sorted(os.listdir(d("clean")))
    gopher = GopherQualityFilter()
    after_dedup: list[str] = []
    with open(d("dedup.tsv"), "w", encoding="utf-8") as out:
        for rank, name in enumerate(clean_files):
            ids = pq.read_table(os.path.join(d("clean"), name), columns=["id"]).column("id").to_pylist()
            kept_clean.update(ids)
            removed: set[int] = set()
            if os.path.exists(d(f"remove/{rank:06d}.remove")):
                removed = set(np.fromfile(d(f"remove/{rank:06d}.remove"), dtype="<u4").tolist())
            if os.path.exists(d(f"remove/{rank:06d}.clusters")):
                for idx, cluster in np.fromfile(d(f"remove/{rank:06d}.clusters"), dtype="<u4").reshape(-1, 2).tolist():
                    out.write(f"{ids[idx]}\t{cluster}\t{int(idx in removed)}\n")
            after_dedup.extend(i for k, i in enumerate(ids) if k not in removed)
    with open(d("after-dedup.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(after_dedup) + "\n")
    with open(d("clean-removed.tsv"), "w", encoding="utf-8") as out:
        for name in input_names:
            # in batches, as the conversion: /usr/bin/time's peak RSS covers this process too
            for b in pq.ParquetFile(os.path.join(d("input"), name)).iter_batches(batch_size=20000, columns=["id", "text"]):
                for i, text in zip(b.column("id").to_pylist(), b.column("text").to_pylist()):
                    if i not in kept_clean:
                        res = gopher.filter(Document(text=text, id=i))
                        out.write(f"{i}\t{res[1] if isinstance(res, tuple) else 'passes now'}\n")


def main() -> None:
    parts, bench, work, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    names = sorted(f for f in os.listdir(parts) if f.endswith(".jsonl"))
    tasks = len(names)
    mh = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
    decont = NGramsDecontConfig(n_grams=13, find_query_ngrams=True, find_overlap_ngrams=False)
    d = lambda name: os.path.join(work, name)  # noqa: E731
    run = lambda pipeline, n, name: LocalPipelineExecutor(  # noqa: E731
        pipeline=pipeline, tasks=n, workers=min(workers, n), logging_dir=d("logs-" + name), skip_completed=False
    ).run()
    # the JSONL parts as Parquet, untimed: datatrove's JsonlReader needs orjson, absent here
    os.makedirs(d("input"), exist_ok=True)
    # in batches: a 5 GB corpus's part as Python dicts would be this process's peak RSS, which is reported
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    for name in names:
        with open(os.path.join(parts, name), encoding="utf-8") as f, pq.ParquetWriter(os.path.join(d("input"), name.replace(".jsonl", ".parquet")), schema) as w:
            batch: list[dict] = []
            for line in f:
                if line.strip():
                    batch.append(json.loads(line))
                if len(batch) >= 20000:
                    w.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                w.write_table(pa.Table.from_pylist(batch, schema=schema))
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    with open(bench, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    docs = [Document(text=x["question"], id=str(i), metadata={"query": x["question"]}) for i, x in enumerate(items)]
    # NGramsDecontIndexer.run imports lighteval after indexing `data`: do its indexing and writing here
    indexer = NGramsDecontIndexer(d("decont-index"), config=decont)
    hashes: set[int] = set()
    for doc in docs:
        hashes.update(indexer.compute_hashes(doc.text, doc.metadata["query"]))
    os.makedirs(d("decont-index"), exist_ok=True)
    np.array(sorted(hashes), dtype=decont.hash_config.np_descr).tofile(os.path.join(d("decont-index"), "bench.index.hashes"))
    seconds["decontamination index"] = time.perf_counter() - t

    stages = [
        ("clean", [ParquetReader(d("input"), id_key="id"), GopherQualityFilter(), ParquetWriter(d("clean"), output_filename="${rank}.parquet")], tasks),
        ("minhash signatures", [ParquetReader(d("clean"), id_key="id"), MinhashDedupSignature(d("sigs"), config=mh)], tasks),
        ("minhash buckets", [MinhashDedupBuckets(d("sigs"), d("buckets"), config=mh)], mh.num_buckets),
        # cluster ids (a small file per task, for the per-stage comparison after the clock) are the one addition
        ("minhash cluster", [MinhashDedupCluster(d("buckets"), d("remove"), config=mh, save_cluster_id=True)], 1),
        (
            "filter + decontaminate",
            [
                ParquetReader(d("clean"), id_key="id"),
                MinhashDedupFilter(d("remove")),
                NGramsDecontFilter(d("decont-index"), config=decont),
                ParquetWriter(d("out"), output_filename="${rank}.parquet"),
            ],
            tasks,
        ),
    ]
    for name, pipeline, n in stages:
        t = time.perf_counter()
        run(pipeline, n, name.replace(" ", "-"))
        seconds[name] = time.perf_counter() - t
    total = time.perf_counter() - t_all

    kept = []
    for name in sorted(os.listdir(d("out"))):
        kept.extend(pq.read_table(os.path.join(d("out"), name), columns=["id"]).column("id").to_pylist())
    with open(d("kept.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(kept) + "\n")
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    write_stages(d, input_names=sorted(os.listdir(d("input"))))  # after the clock and the RSS reading
    print(json.dumps({"seconds": total, "stages": seconds, "kept": len(kept), "peak_rss_mb": rss / 1024}))


if __name__ == "__main__":
    main()
