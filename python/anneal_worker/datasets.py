"""Reading datasets from anneal's artifact layout.

A dataset artifact is a directory holding `data.jsonl` (one row per line) and `dataset.json`
({"format": ..., "rows": N}), or shards listed in dataset.json ({"shards": ["data/train-00000-of-00004
.parquet", ...]}). A Source dataset (outside the store) may also be a single `.jsonl`, `.jsonl.gz` or
`.parquet` file, a directory of them or of a `data/` folder of them (the Hugging Face layout), or a glob
of them (read in sorted name order, so the row order is stable), as steps/data/jsonl.ts reads them.
Parquet is read a row group at a time with pyarrow.

Row formats are the ones in engine/rows.ts, defined once for both languages (row_formats.py reads the
row_formats.json generated from the TS schemas): text, instruction, prompt-completion, messages, preference.
"""
from __future__ import annotations

import glob
import gzip
import json
import os
from typing import Any, Iterator

from .protocol import fail
from .row_formats import check_row, infer_format


_SHARD_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def _shards_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(_SHARD_SUFFIXES))


def dataset_files(path: str) -> list[str]:
    """The JSONL and Parquet files a dataset input consists of, in reading order."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        if any(c in os.path.basename(path) for c in "*?["):
            files = sorted(f for f in glob.glob(path) if f.endswith(_SHARD_SUFFIXES) and os.path.isfile(f))
            if not files:
                fail(f"{path}: the glob matches no *.jsonl, *.jsonl.gz or *.parquet file")
            return files
        fail(f"dataset not found: {path}")
    if os.path.exists(os.path.join(path, "data.jsonl")):
        return [os.path.join(path, "data.jsonl")]
    meta = os.path.join(path, "dataset.json")
    if os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            shards = json.load(f).get("shards")
        if isinstance(shards, list):
            return [os.path.join(path, s) for s in shards if isinstance(s, str) and ".." not in s]
    files = _shards_in(path)
    if not files and os.path.isdir(os.path.join(path, "data")):
        files = _shards_in(os.path.join(path, "data"))
    if not files:
        fail(f"{path} holds no data.jsonl and no *.jsonl / *.jsonl.gz / *.parquet files (nor a data/ folder of them)")
    return files


def iter_parquet(file: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1, row) of a Parquet shard, a row group at a time; null columns are left out."""
    try:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(file)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad shard, named
        fail(f"{file}: not a readable Parquet file ({e})")
    n = 0
    for g in range(pf.num_row_groups):
        try:
            rows = pf.read_row_group(g).to_pylist()
        except Exception as e:  # noqa: BLE001
            fail(f"{file}:{n + 1}: cannot decode row group {g} of the Parquet shard ({e})")
        for row in rows:
            n += 1
            yield n, {k: v for k, v in row.items() if v is not None}


def _is_gzip(file: str) -> bool:
    if file.endswith(".gz"):
        return True
    with open(file, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def iter_lines(file: str) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, problem) for every non-blank line, as steps/data/jsonl.ts reads them: split on
    b"\\n", each line decoded as strict UTF-8 (a bad byte is that line's problem, never U+FFFD), a BOM
    opening the file dropped."""
    opener = gzip.open if _is_gzip(file) else open
    with opener(file, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, None, f"invalid UTF-8 at byte {e.start} of the line"
                continue
            if text.strip():
                yield n, text, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None), or (None, why the line is not a JSON object). NaN and Infinity are refused, as in JS."""
    try:
        row = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        return None, f"malformed JSON ({e.msg if isinstance(e, json.JSONDecodeError) else e})"
    if not isinstance(row, dict):
        return None, "expected a JSON object per line"
    return row, None


def iter_rows(path: str, who: str = "") -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yields (file, line number, row) for every non-empty line of a dataset input; a bad line fails,
    naming `who` (e.g. "sft: input 'data'"), the file and the line."""
    for file in dataset_files(path):
        if file.endswith(".parquet"):
            for n, row in iter_parquet(file):
                yield file, n, row
            continue
        for n, text, problem in iter_lines(file):
            row, problem = (None, problem) if problem else parse_line(text or "")
            if row is None:
                fail(f"{who + ': ' if who else ''}{file}:{n}: {problem}")
            yield file, n, row


def declared_format(path: str) -> str | None:
    """The format a dataset artifact declares in its dataset.json, if any."""
    meta = os.path.join(path, "dataset.json") if os.path.isdir(path) else None
    if meta and os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            return json.load(f).get("format")
    return None


def describe_problem(field: str, reason: str) -> str:
    """A row problem as workers word it: "field 'output' must be a string"."""
    if reason == "Missing key":
        return f"missing field '{field}'"
    if reason == "Expected string":
        return f"field '{field}' must be a string"
    return f"field '{field}': {reason}" if field else reason


def read_dataset(path: str, accept: tuple[str, ...], who: str) -> tuple[str, list[dict[str, Any]]]:
    """Reads every row of a dataset input and checks they all have one of the accepted formats.

    Returns (format, rows). `who` names the step and port in error messages, e.g. "sft: input 'data'".
    The format is the artifact's declared one, else the first row's (row_formats.py: one precedence for
    every reader). The check runs before any model is loaded, so a wrong dataset fails in seconds.
    """
    fmt: str | None = None
    rows: list[dict[str, Any]] = []
    for fmt, row in iter_checked_rows(path, accept, who):
        rows.append(row)
    assert fmt is not None  # iter_checked_rows fails on an empty dataset
    return fmt, rows


def iter_checked_rows(path: str, accept: tuple[str, ...], who: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a dataset input one at a time, for data larger than memory (read_dataset collects
    them): yields (format, row), failing at the first bad row (so a consumer must not commit what it
    wrote before the end) and at the end if there was no row."""
    declared = declared_format(path)
    if declared is not None and declared != "any" and declared not in accept:
        fail(f"{who}: dataset {path} has rows of format '{declared}', expected {' or '.join(accept)}")
    fmt: str | None = declared if declared in accept else None
    any_row = False
    for file, n, row in iter_rows(path, who):
        if fmt is None:
            fmt = infer_format(row)
            if fmt not in accept:
                found = fmt or "unknown (fields " + ", ".join(sorted(row)) + ")"
                fail(f"{who}: {file}:{n}: row format is {found}, expected {' or '.join(accept)}")
        problem = check_row(fmt, row)
        if problem:
            fail(f"{who}: {file}:{n}: not a {fmt} row: {describe_problem(*problem)}")
        any_row = True
        yield fmt, row
    if not any_row:
        fail(f"{who}: dataset {path} is empty")


def write_dataset(path: str, fmt: str, rows: list[dict[str, Any]]) -> None:
    """Writes a dataset artifact directory (used by tests and small generator steps)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "data.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(path, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump({"format": fmt, "rows": len(rows)}, f)
