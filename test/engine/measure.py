"""A stand-in for a user's own program, run by the custom-steps test as a command step."""
import json
import os
import sys

spec = json.load(open(sys.argv[1]))
words = open(spec["inputs"]["data"]).read().split()
for i, _ in enumerate(words):
    print(json.dumps({"type": "progress", "current": i + 1, "total": len(words), "unit": "words"}), flush=True)
if spec["params"]["fail"]:
    print(json.dumps({"type": "log", "level": "error", "message": "the input has too few words for this test"}), flush=True)
    sys.exit(3)
print(json.dumps({"type": "metric", "name": "words", "value": len(words)}), flush=True)
with open(os.path.join(spec["output"], "report.json"), "w") as f:
    json.dump({"words": len(words)}, f)
