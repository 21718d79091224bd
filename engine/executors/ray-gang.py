"""One multi-node step on Ray: a placement group of N bundles, one actor per bundle, each running the
same node launcher (engine/executors/cluster-node.ts, which runs torchrun for its node).

    python ray-gang.py --cpus C --gpus G --strategy SPREAD JOB.json -- NODE cluster-node.ts JOB.json

It is the job's command under anneal's cluster runner on Ray (ray.ts gangCommand). Why not Ray Train's
TorchTrainer: it runs a Python function in each worker and sets up the process group itself, while
anneal's training workers are scripts launched by torchrun (as locally and on Slurm); a placement group
whose actors run the same torchrun launcher keeps one launch path and one worker for every executor.

- The placement group reserves every bundle at once or none (no partial gang); it waits in Ray's queue
  until the cluster can hold the whole gang.
- Actor 0 hosts the rendezvous: its node's IP and a port free there are every node's master address.
- Every node's stdout goes to the job's events file (global rank 0 speaks the protocol; a node whose
  rank failed adds a line naming it); every node's stderr to the job's log (node 0) or node-<R>.log
  beside it.
- The first node to fail stops the others; SIGTERM (ray job stop, the runner's interrupt) stops all,
  and the group is removed. The exit code is the first failing node's.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

parser = argparse.ArgumentParser()
parser.add_argument("--cpus", type=float, required=True)
parser.add_argument("--gpus", type=float, default=0)
parser.add_argument("--strategy", default="SPREAD")
parser.add_argument("job")
parser.add_argument("launcher", nargs=argparse.REMAINDER)
args = parser.parse_args()
launcher = [a for a in args.launcher if a != "--"] if args.launcher[:1] == ["--"] else args.launcher
with open(args.job, encoding="utf-8") as f:
    job = json.load(f)
nodes = int(job["gang"]["nodes"])
attempt_dir = os.path.dirname(os.path.abspath(args.job))


@ray.remote(max_concurrency=2)
class Node:
    """One node's torchrun: started by run(), stopped by stop() from another thread of the actor."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.stopped = False

    def address(self) -> tuple[str, int]:
        s = socket.socket()
        s.bind(("", 0))
        port = s.getsockname()[1]
        s.close()
        return ray.util.get_node_ip_address(), port

    def run(self, rank: int, addr: str, port: int) -> int:
        env = dict(os.environ, **job["env"], ANNEAL_NODE_RANK=str(rank), ANNEAL_MASTER_ADDR=addr, ANNEAL_MASTER_PORT=str(port))
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "") if args.gpus > 0 else ""
        # every node's stdout goes to the events: global rank 0 speaks the protocol there, and a node's
        # launcher (cluster-node.ts) adds one error line naming its rank that failed; the other ranks'
        # own output goes to their rank logs (anneal_worker/distributed.py)
        out = open(job["events"], "ab")
        err = open(job["log"] if rank == 0 else os.path.join(attempt_dir, f"node-{rank}.log"), "ab")
        with self.lock:
            if self.stopped:
                return 143
            # its own session: stop() signals the whole group (torchrun and its ranks)
            self.proc = subprocess.Popen(launcher, cwd=job["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        code = self.proc.wait()
        out.close()
        err.close()
        return code

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


ray.init(address="auto", log_to_driver=False)
bundle = {"CPU": args.cpus, **({"GPU": args.gpus} if args.gpus > 0 else {})}
pg = placement_group([bundle] * nodes, strategy=args.strategy)
actors: list = []
stopping = threading.Event()


def stop_all(*_: object) -> None:
    stopping.set()
    ray.get([a.stop.remote() for a in actors])


signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(143)))
signal.signal(signal.SIGINT, lambda *_: (stop_all(), sys.exit(130)))
try:
    print(f"anneal ray gang: waiting for {nodes} bundles of {bundle} ({args.strategy})", file=sys.stderr, flush=True)
    ray.get(pg.ready())
    actors = [
        Node.options(num_cpus=args.cpus, num_gpus=args.gpus, scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i)).remote()
        for i in range(nodes)
    ]
    addr, port = ray.get(actors[0].address.remote())
    print(f"anneal ray gang: {nodes} nodes, rendezvous {addr}:{port}", file=sys.stderr, flush=True)
    running = {a.run.remote(i, addr, port): i for i, a in enumerate(actors)}
    code = 0
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        rank = running.pop(done[0])
        result = ray.get(done[0])
        if result != 0 and code == 0:
            code = result
            print(f"anneal ray gang: node {rank} exited {result}; stopping the others", file=sys.stderr, flush=True)
            stop_all()
    sys.exit(code)
finally:
    remove_placement_group(pg)
