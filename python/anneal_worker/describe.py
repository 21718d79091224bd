"""Describes a worker's config dataclass as JSON, for the test that checks the TS Schema agrees with it.

Usage: python -m anneal_worker.describe WORKER.py ConfigClass
Prints {"fields": [{"name", "tsName", "type", "default", "choices"}] in field order, "presets" and
"defaults"}: `type` is the annotation as written (e.g. "int", "float | None", "list[str]"), `tsName` the
param's name in recipes and specs (protocol.ts_name), and presets / defaults the module's PRESETS and
DEFAULTS tables (what a null field resolves to), keyed by tsName.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys

from anneal_worker.protocol import ts_name


def describe(script: str, class_name: str) -> dict:
    spec = importlib.util.spec_from_file_location("anneal_worker_under_test", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while processing the class
    spec.loader.exec_module(module)
    cls = getattr(module, class_name)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        choices = f.metadata.get("choices")
        out.append({"name": f.name, "tsName": ts_name(f.name), "type": str(f.type), "default": default,
                    "choices": list(choices) if choices else None})
    names = {f.name for f in dataclasses.fields(cls)}
    by_ts = lambda table: {ts_name(k) if k in names else k: v for k, v in table.items()}  # noqa: E731
    presets = {name: by_ts(values) for name, values in getattr(module, "PRESETS", {}).items()}
    return {"fields": out, "presets": presets, "defaults": by_ts(getattr(module, "DEFAULTS", {}))}


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1], sys.argv[2])))
