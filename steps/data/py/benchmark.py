"""Benchmark items for decontamination: the Python twin of steps/data/benchmark.ts (dotted field paths,
answers given as an index or letter resolve to the choice's text, ARC's {label, text} choices)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from anneal_worker.protocol import fail
from data_io import RowReader


@dataclass
class Item:
    benchmark: str
    at: str
    question: str
    answer: str | None


def _get(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def benchmark_name(path: str) -> str:
    base = re.sub(r"\.jsonl(\.gz)?$", "", os.path.basename(path.rstrip("/")))
    return base or path


def _resolve(a: Any, choices: list[str], labels: list[str] | None) -> str | None:
    if not choices:
        return str(a) if isinstance(a, (str, int, float)) and not isinstance(a, bool) else None
    if isinstance(a, int) and not isinstance(a, bool):
        return choices[a] if 0 <= a < len(choices) else None
    if not isinstance(a, str):
        return None
    if labels is not None and a in labels:
        return choices[labels.index(a)]
    if re.fullmatch(r"[A-Z]", a):
        i = ord(a) - 65
        return choices[i] if i < len(choices) else None
    if re.fullmatch(r"\d+", a):
        i = int(a)
        return choices[i] if i < len(choices) else None
    return a


def read_benchmark(path: str, fields: dict[str, Any]) -> list[Item]:
    q_field = fields.get("question", "question")
    c_field = fields.get("choices")
    a_field = fields.get("answer")
    name = benchmark_name(path)
    items: list[Item] = []
    for r in RowReader(path, None):
        where = f"{r.file}:{r.line}"
        q = _get(r.row, q_field)
        if not isinstance(q, str):
            why = "missing (set the question param to the field holding the question)" if q is None else "expected a string"
            fail(f"{where}: field {q_field}: {why}")
        choices: list[str] = []
        labels = None
        if c_field is not None:
            c = _get(r.row, c_field)
            if isinstance(c, dict) and isinstance(c.get("text"), list):
                labels = c.get("label")
                c = c["text"]
            if not isinstance(c, list) or not all(isinstance(x, str) for x in c):
                fail(f"{where}: field {c_field}: expected an array of strings")
            choices = c
        answer = None
        if a_field is not None:
            a = _get(r.row, a_field)
            if a is None:
                fail(f"{where}: field {a_field}: missing")
            answer = _resolve(a, choices, labels)
            if answer is None:
                fail(f"{where}: field {a_field}: cannot resolve {a!r} against {len(choices)} choices")
        items.append(Item(name, r.at, q, answer))
    return items
