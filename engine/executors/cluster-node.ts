/**
 * One node's share of a multi-node step (cluster-job.ts Gang): started once per node by the job's
 * launcher (Slurm: `srun --ntasks-per-node=1` from the batch script's runner; Ray: one actor per
 * placement-group bundle), it runs torchrun for this node:
 *
 *   python -m torch.distributed.run --nnodes N --node-rank R --master-addr A --master-port P
 *     --rdzv-id KEY --nproc-per-node G --max-restarts 0 SCRIPT ARGS...
 *
 * with R from ANNEAL_NODE_RANK (Ray) or SLURM_PROCID (Slurm: one task per node, so the task's rank is
 * the node's), and A:P from ANNEAL_MASTER_ADDR/ANNEAL_MASTER_PORT, which the launcher set to the first
 * node's address (static rendezvous: global rank 0, the one that speaks the protocol, runs on node 0).
 * `--max-restarts 0`: a failed rank fails the step; the rerun resumes from the last checkpoint. It is
 * started by Node itself (type stripping) and imports nothing but Node's built-ins; the argv matches
 * steps/train/torchrun.ts's multi-node form.
 */
import * as fs from "node:fs"
import { spawn } from "node:child_process"
import type { RunnerJob } from "./cluster-job.ts"

const fail = (message: string): never => {
  process.stderr.write(`anneal node: ${message}\n`)
  process.exit(2)
}

const job = JSON.parse(fs.readFileSync(process.argv[2] ?? fail("usage: cluster-node.ts JOB.json"), "utf8")) as RunnerJob
const gang = job.gang ?? fail(`${process.argv[2]} names no multi-node launch`)
const rank = Number(process.env.ANNEAL_NODE_RANK ?? process.env.SLURM_PROCID ?? fail("no node rank (ANNEAL_NODE_RANK or SLURM_PROCID)"))
const addr = process.env.ANNEAL_MASTER_ADDR ?? fail("no rendezvous address (ANNEAL_MASTER_ADDR)")
const port = process.env.ANNEAL_MASTER_PORT ?? fail("no rendezvous port (ANNEAL_MASTER_PORT)")
if (!Number.isInteger(rank) || rank < 0 || rank >= gang.nodes) fail(`node rank ${rank} is not in 0..${gang.nodes - 1}`)

const argv = [
  gang.python, "-m", "torch.distributed.run",
  "--nnodes", String(gang.nodes), "--node-rank", String(rank), "--master-addr", addr, "--master-port", port,
  "--rdzv-id", gang.runId.slice(0, 32), "--nproc-per-node", String(gang.processesPerNode), "--max-restarts", "0",
  gang.script, ...gang.args
]
process.stderr.write(`anneal node: rank ${rank} of ${gang.nodes}, rendezvous ${addr}:${port}\n`)
// torchrun leads a process group of its own: a stop reaches it and every rank it started
const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...job.env }, detached: true })
const stop = (signal: NodeJS.Signals) => {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    // already gone
  }
}
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => stop(signal))
// the launcher that started this node's share (a Ray actor, an srun task) died without a word: stop the
// ranks rather than leave them holding the node's GPUs
const parent = process.ppid
setInterval(() => {
  if (process.ppid === parent) return
  stop("SIGTERM")
  setTimeout(() => stop("SIGKILL"), 10_000).unref()
}, 1000).unref()
child.on("error", (e) => fail(`could not start ${argv[0]}: ${e.message}`))
child.on("exit", (code, signal) => process.exit(code ?? (signal !== null ? 128 + 15 : 1)))
