"""Dataset rows for the data steps' Python workers (the benchmark reader): the same rules as
steps/data/jsonl.ts and formats.ts (file:line errors naming the field, `on_invalid: skip` counted),
streaming so only what a method needs stays in memory. Formats, precedence and field roles
come from anneal_worker.row_formats (the one definition, generated from the TS schemas); lines are read
by anneal_worker.datasets.iter_lines (strict UTF-8, a leading BOM dropped), as the TS reader does."""
from __future__ import annotations

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


def preview(s: str, n: int = 160) -> str:
    t = " ".join(s.split())
    return t if len(t) <= n else t[: n - 1] + "…"
