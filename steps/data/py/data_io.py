"""Dataset rows for the data steps' Python workers: the same rules as steps/data/jsonl.ts and
formats.ts (file:line errors naming the field, `on_invalid: skip` counted, question/answer text per
row format), streaming so only what a method needs stays in memory. Formats, precedence and field roles
come from anneal_worker.row_formats (the one definition, generated from the TS schemas); lines are read
by anneal_worker.datasets.iter_lines (strict UTF-8, a leading BOM dropped), as the TS reader does."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from anneal_worker.datasets import dataset_files, declared_format, iter_lines, iter_parquet, parse_line
from anneal_worker.protocol import fail
from anneal_worker.row_formats import ANSWER_FIELD, FORMATS, QUESTION_FIELDS, check_row, infer_format

__all__ = ["ANSWER_FIELD", "FORMATS", "QUESTION_FIELDS", "check_row", "infer_format"]


def detect_format(path: str, on_invalid: str = "error") -> str:
    """The declared format, else the first row's. With on_invalid "skip", lines that reading would skip
    are skipped here too (detection is never stricter than reading)."""
    declared = declared_format(path)
    if declared in FORMATS:
        return declared
    for file in dataset_files(path):
        if file.endswith(".parquet"):
            for n, row in iter_parquet(file):
                fmt = infer_format(row)
                if fmt is not None:
                    return fmt
                if on_invalid != "skip":
                    fail(f"{file}:{n}: cannot tell the row format from its columns")
            continue
        for n, text, problem in iter_lines(file):
            row, problem = (None, problem) if problem else parse_line(text or "")
            fmt = infer_format(row) if row is not None else None
            if fmt is not None:
                return fmt
            if on_invalid != "skip":
                fail(f"{file}:{n}: {problem or 'cannot tell the row format from its keys'}")
    fail(f"{path}: dataset is empty: no rows")
    raise AssertionError


@dataclass
class Located:
    row: dict[str, Any]
    file: str
    line: int
    index: int

    @property
    def at(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"


@dataclass
class RowReader:
    """Iterates rows with their location; invalid lines fail (file:line, field) or are skipped and counted."""

    path: str
    fmt: str | None
    on_invalid: str = "error"
    rows: int = 0
    skipped: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Located]:
        self.rows = 0
        self.skipped = 0
        self.examples = []
        for file in dataset_files(self.path):
            if file.endswith(".parquet"):
                for n, value in iter_parquet(file):
                    row = self._check_row(file, n, value)
                    if row is None:
                        continue
                    yield Located(row, file, n, self.rows)
                    self.rows += 1
                continue
            for n, text, problem in iter_lines(file):
                row = self._invalid(file, n, "", problem) if problem else self._check(file, n, text or "")
                if row is None:
                    continue
                yield Located(row, file, n, self.rows)
                self.rows += 1
        if self.rows == 0:
            extra = f" (all {self.skipped} lines were invalid and skipped)" if self.skipped else ""
            fail(f"{self.path}: dataset is empty: no rows{extra}")

    def _check(self, file: str, n: int, text: str) -> dict[str, Any] | None:
        row, problem = parse_line(text)
        if row is None:
            return self._invalid(file, n, "", problem or "")
        return self._check_row(file, n, row)

    def _check_row(self, file: str, n: int, row: dict[str, Any]) -> dict[str, Any] | None:
        if self.fmt is not None:
            found = check_row(self.fmt, row)
            if found is not None:
                return self._invalid(file, n, found[0], found[1])
        return row

    def _invalid(self, file: str, n: int, fld: str, reason: str) -> None:
        if self.on_invalid != "skip":
            where = f" field {fld}:" if fld else ""
            fail(f"{file}:{n}:{where} {reason}")
        self.skipped += 1
        if len(self.examples) < 20:
            self.examples.append({"file": file, "line": n, "field": fld, "reason": reason})
        return None


def field_text(row: dict[str, Any], name: str) -> str:
    if name.startswith("messages"):
        role = name.split(":")[1] if ":" in name else None
        return "\n".join(m["content"] for m in row.get("messages", []) if role is None or m["role"] == role)
    v = row.get(name)
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def join_fields(row: dict[str, Any], names: list[str]) -> str:
    """Fields joined by a space, skipping empty ones (Platypus: instruction + " " + input)."""
    return " ".join(t for t in (field_text(row, n) for n in names) if t)


def question_text(row: dict[str, Any], fmt: str) -> str:
    return join_fields(row, QUESTION_FIELDS[fmt])


def answer_text(row: dict[str, Any], fmt: str) -> str:
    return field_text(row, ANSWER_FIELD[fmt])


def preview(s: str, n: int = 160) -> str:
    t = " ".join(s.split())
    return t if len(t) <= n else t[: n - 1] + "…"


class DatasetWriter:
    def __init__(self, out_dir: str, fmt: str) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.dir = out_dir
        self.fmt = fmt
        self.rows = 0
        self.f = open(os.path.join(out_dir, "data.jsonl"), "w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        # separators and ensure_ascii as JSON.stringify writes them, so TS and Python outputs match
        self.f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.rows += 1

    def close(self) -> int:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        with open(os.path.join(self.dir, "dataset.json"), "w", encoding="utf-8") as m:
            m.write(json.dumps({"format": self.fmt, "rows": self.rows}, separators=(",", ":")) + "\n")
        return self.rows


class RemovalLog:
    """Counts per rule with examples for report.json, every removal streamed to removed.jsonl."""

    def __init__(self, out_dir: str, max_examples: int) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.max_examples = max_examples
        self.f = open(os.path.join(out_dir, "removed.jsonl"), "w", encoding="utf-8")

    def remove(self, rule: str, at: str, text: str, **extra: Any) -> None:
        self.counts[rule] = self.counts.get(rule, 0) + 1
        ex = self.examples.setdefault(rule, [])
        if len(ex) < self.max_examples:
            ex.append({"at": at, "text": preview(text), **extra})
        self.f.write(json.dumps({"at": at, "rule": rule, **extra}, ensure_ascii=False, separators=(",", ":")) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self.f.close()


def write_report(out_dir: str, report: dict[str, Any]) -> None:
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
