"""Reading datasets from anneal's artifact layout.

A dataset artifact is a directory holding `data.jsonl` (one row per line) and `dataset.json`
({"format": ..., "rows": N}). A Source dataset (outside the store) may also be a single `.jsonl` or
`.jsonl.gz` file, or a directory of them (read in sorted name order, so the row order is stable).

Row formats are the ones in engine/rows.ts: text, instruction, prompt-completion, messages, preference.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Iterator

from .protocol import fail

# The fields that identify each row format (engine/rows.ts); `input` of an instruction is optional.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "instruction": ("instruction", "output"),
    "prompt-completion": ("prompt", "completion"),
    "messages": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
}


def dataset_files(path: str) -> list[str]:
    """The JSONL files a dataset input consists of."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        fail(f"dataset not found: {path}")
    if os.path.exists(os.path.join(path, "data.jsonl")):
        return [os.path.join(path, "data.jsonl")]
    files = sorted(
        os.path.join(path, n) for n in os.listdir(path) if n.endswith(".jsonl") or n.endswith(".jsonl.gz")
    )
    if not files:
        fail(f"{path} holds no data.jsonl and no *.jsonl / *.jsonl.gz files")
    return files


def iter_rows(path: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yields (file, line number, row) for every non-empty line of a dataset input."""
    for file in dataset_files(path):
        opener = gzip.open if file.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{file}:{n}: not valid JSON ({e.msg})")
                if not isinstance(row, dict):
                    fail(f"{file}:{n}: a row must be a JSON object")
                yield file, n, row


def declared_format(path: str) -> str | None:
    """The format a dataset artifact declares in its dataset.json, if any."""
    meta = os.path.join(path, "dataset.json") if os.path.isdir(path) else None
    if meta and os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            return json.load(f).get("format")
    return None


def row_format(row: dict[str, Any]) -> str | None:
    """The row format a row's fields match (preference before prompt-completion: it has a prompt too)."""
    for name in ("preference", "prompt-completion", "instruction", "messages", "text"):
        if all(k in row for k in FORMAT_FIELDS[name]):
            return name
    return None


def _check_row(fmt: str, row: dict[str, Any]) -> str | None:
    """Why a row does not fit a format, or None."""
    for k in FORMAT_FIELDS[fmt]:
        if k not in row:
            return f"missing field '{k}'"
    if fmt == "messages":
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "'messages' must be a non-empty list"
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool") \
                    or not isinstance(m.get("content"), str):
                return "each message needs a role (system/user/assistant/tool) and a string content"
        return None
    for k in FORMAT_FIELDS[fmt] + (("input",) if fmt == "instruction" and "input" in row else ()):
        if not isinstance(row[k], str):
            return f"field '{k}' must be a string"
    return None


def read_dataset(path: str, accept: tuple[str, ...], who: str) -> tuple[str, list[dict[str, Any]]]:
    """Reads every row of a dataset input and checks they all have one of the accepted formats.

    Returns (format, rows). `who` names the step and port in error messages, e.g. "sft: input 'data'".
    The check runs before any model is loaded, so a wrong dataset fails in seconds.
    """
    declared = declared_format(path)
    if declared is not None and declared != "any" and declared not in accept:
        fail(f"{who}: dataset {path} has rows of format '{declared}', expected {' or '.join(accept)}")
    fmt: str | None = declared if declared in accept else None
    rows: list[dict[str, Any]] = []
    for file, n, row in iter_rows(path):
        if fmt is None:
            fmt = row_format(row)
            if fmt not in accept:
                found = fmt or "unknown (fields " + ", ".join(sorted(row)) + ")"
                fail(f"{who}: {file}:{n}: row format is {found}, expected {' or '.join(accept)}")
        problem = _check_row(fmt, row)
        if problem:
            fail(f"{who}: {file}:{n}: not a {fmt} row: {problem}")
        rows.append(row)
    if not rows:
        fail(f"{who}: dataset {path} is empty")
    assert fmt is not None
    return fmt, rows


def write_dataset(path: str, fmt: str, rows: list[dict[str, Any]]) -> None:
    """Writes a dataset artifact directory (used by tests and small generator steps)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "data.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(path, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump({"format": fmt, "rows": len(rows)}, f)
