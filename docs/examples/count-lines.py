#!/usr/bin/env python3
"""A command step in Python (standard library only): counts the lines of its `data` input that are at
least `minLength` characters long. The contract: docs/command-steps.md.

In a recipe:
    const countLines = defineStep({
      kind: "count-lines", version: 1,
      params: Schema.Struct({ minLength: withDefault(Schema.Int, 0) }),
      inputs: { data: Port.files() }, output: Port.report(),
      sourceFiles: ["count-lines.py"],
      command: (ctx) => ({ argv: ["python3", "count-lines.py", ctx.specPath] })
    })
"""
import json
import os
import sys


def emit(**event):
    """One protocol line on stdout (docs/command-steps.md); human logs go to stderr."""
    print(json.dumps(event), flush=True)


def fail(message):
    emit(type="log", level="error", message=message)
    sys.exit(2)  # bad input


spec = json.load(open(sys.argv[1] if len(sys.argv) > 1 else os.environ["ANNEAL_SPEC"]))
min_length = spec["params"]["minLength"]
if min_length < 0:
    fail(f"param minLength must be >= 0, got {min_length}")

with open(spec["inputs"]["data"], encoding="utf-8") as f:
    lines = f.read().splitlines()
kept = 0
for i, line in enumerate(lines, 1):
    kept += len(line) >= min_length
    if i % 1000 == 0 or i == len(lines):
        emit(type="progress", current=i, total=len(lines), unit="lines")

# the output directory exists and is empty; it is committed only if we exit 0
with open(os.path.join(spec["output"], "report.json"), "w") as f:
    json.dump({"lines": kept}, f)
emit(type="metric", name="lines", value=kept)
print(f"{kept} of {len(lines)} lines kept", file=sys.stderr)
