"""A data step's shard tasks on Ray: one Ray task (1 CPU) per group of shard specs, each running the
shard command the driver resolved (`node shard-main.ts SPEC.json...`). It is the entrypoint of one Ray
job (shard-jobs.ts rayShardRunner):

    python ray-shards.py COMMANDS.json      # {"commands": [[node, arg, ...], ...]}

It exits 0 even when some tasks failed: a task is finished when its marker exists (steps/data/fanout.ts),
and the data step runs every unfinished task again on its own machine, where a bad shard's error is
reported with the shard's name.
"""
import json
import subprocess
import sys

import ray

with open(sys.argv[1], encoding="utf-8") as f:
    commands = json.load(f)["commands"]

ray.init(address="auto", log_to_driver=False)


@ray.remote(num_cpus=1)
def run(argv: list) -> int:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"anneal shards: {argv[-1]}: exit {done.returncode}: {done.stderr.strip()[-500:]}", file=sys.stderr, flush=True)
    return done.returncode


codes = ray.get([run.remote(c) for c in commands])
failed = sum(1 for c in codes if c != 0)
print(f"anneal shards: {len(codes) - failed} of {len(codes)} groups done", file=sys.stderr, flush=True)
