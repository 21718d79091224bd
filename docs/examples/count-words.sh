#!/bin/sh
# A command step in POSIX shell (reads the spec with jq): counts the words of its `data` input.
# The contract: docs/command-steps.md. In a recipe:
#   command: (ctx) => ({ argv: ["sh", "count-words.sh", ctx.specPath] })
set -eu
spec="${1:-$ANNEAL_SPEC}"
input=$(jq -r '.inputs.data' "$spec")
output=$(jq -r '.output' "$spec")
label=$(jq -r '.params.label' "$spec")

echo '{"type": "progress", "current": 0, "total": 1, "unit": "files"}'
words=$(wc -w < "$input" | tr -d ' ')
jq -n --arg key "$label" --argjson words "$words" '{($key): $words}' > "$output/report.json"
echo '{"type": "progress", "current": 1, "total": 1, "unit": "files"}'
echo "{\"type\": \"metric\", \"name\": \"words\", \"value\": $words}"
echo "counted $words words in $input" >&2
