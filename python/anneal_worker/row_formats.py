"""The row formats, as defined once in TypeScript (steps/data/row-formats.ts, from engine/rows.ts) and
shipped here as row_formats.json: which format a row is (the first in `precedence` whose required fields
it has), the JSON Schema of each format, and each format's text / question / answer fields.

The schemas use a small subset of JSON Schema (type, properties, required, items, minItems, enum, anyOf);
a keyword outside it fails at import, so a schema change in TS can never be silently ignored here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC: dict[str, Any] = json.loads((Path(__file__).with_name("row_formats.json")).read_text(encoding="utf-8"))
FORMATS: tuple[str, ...] = tuple(SPEC["precedence"])
_FORMATS: dict[str, dict[str, Any]] = SPEC["formats"]

IDENTIFY = {f: list(_FORMATS[f]["identify"]) for f in FORMATS}
TEXT_FIELDS = {f: list(_FORMATS[f]["text"]) for f in FORMATS}
QUESTION_FIELDS = {f: list(_FORMATS[f]["question"]) for f in FORMATS}
ANSWER_FIELD = {f: _FORMATS[f]["answer"] for f in FORMATS}
NON_EMPTY = {f: list(_FORMATS[f]["nonEmpty"]) for f in FORMATS}

_KNOWN = {"type", "properties", "required", "additionalProperties", "items", "minItems", "enum", "anyOf"}


def _check_keywords(schema: dict[str, Any], where: str) -> None:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise RuntimeError(f"row_formats.json: {where} uses JSON Schema keywords this reader does not know: {sorted(unknown)}")
    for k, sub in schema.get("properties", {}).items():
        _check_keywords(sub, f"{where}.{k}")
    if "items" in schema:
        _check_keywords(schema["items"], f"{where}[]")
    for i, sub in enumerate(schema.get("anyOf", [])):
        _check_keywords(sub, f"{where}|{i}")


for _f in FORMATS:
    _check_keywords(_FORMATS[_f]["schema"], _f)

_TYPES = {"object": dict, "string": str, "array": list}


def _problem(schema: dict[str, Any], value: Any, path: str) -> tuple[str, str] | None:
    """(field path, reason) for the first way `value` breaks `schema`, else None."""
    if "anyOf" in schema:
        found = [_problem(s, value, path) for s in schema["anyOf"]]
        return None if any(p is None for p in found) else found[0]
    t = schema.get("type")
    if t is not None and not isinstance(value, _TYPES[t]):
        return path, {"object": "Expected an object", "string": "Expected string", "array": "Expected an array"}[t]
    if "enum" in schema and value not in schema["enum"]:
        return path, "Expected " + " | ".join(json.dumps(v) for v in schema["enum"])
    if t == "object":
        for k in schema.get("required", []):
            if k not in value:
                return (f"{path}.{k}" if path else k), "Missing key"
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                p = _problem(sub, value[k], f"{path}.{k}" if path else k)
                if p is not None:
                    return p
    if t == "array":
        if len(value) < schema.get("minItems", 0):
            return path, f"Expected a value with a length of at least {schema['minItems']}"
        for i, item in enumerate(value):
            p = _problem(schema.get("items", {}), item, f"{path}.{i}")
            if p is not None:
                return p
    return None


def infer_format(row: dict[str, Any]) -> str | None:
    """The format a row's keys imply: the first in precedence whose required fields are all present."""
    return next((f for f in FORMATS if all(k in row for k in IDENTIFY[f])), None)


def check_row(fmt: str, row: Any) -> tuple[str, str] | None:
    """(field, reason) when a row does not fit its format, else None (field "" for the row itself)."""
    return _problem(_FORMATS[fmt]["schema"], row, "")
