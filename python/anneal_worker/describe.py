"""Describes a worker's config dataclass as JSON, for the test that checks the TS Schema agrees with it.

Usage: python -m anneal_worker.describe WORKER.py ConfigClass
Prints [{"name", "type", "default", "choices"}] in field order; `type` is the annotation as written
(e.g. "int", "float | None", "list[str]").
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys


def describe(script: str, class_name: str) -> list[dict]:
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
        out.append({"name": f.name, "type": str(f.type), "default": default,
                    "choices": list(choices) if choices else None})
    return out


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1], sys.argv[2])))
