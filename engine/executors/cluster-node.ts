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
// torchrun leads a process group of its own: a stop reaches it and every rank it started. Its stderr
// passes through (it goes to the job's log as before) and its tail is kept, to name a failed rank.
const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "pipe"], env: { ...process.env, ...job.env }, detached: true })
const tail: Array<string> = []
let partial = ""
child.stderr!.on("data", (chunk: Buffer) => {
  process.stderr.write(chunk)
  const lines = (partial + chunk.toString("utf8")).split("\n")
  partial = lines.pop()!
  tail.push(...lines)
  if (tail.length > 400) tail.splice(0, tail.length - 400)
})
let stopping = false
const stop = (signal: NodeJS.Signals) => {
  try {
    process.kill(-child.pid!, signal)
  } catch {
    // already gone
  }
}
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    stopping = true
    stop(signal)
  })
}
// the launcher that started this node's share (a Ray actor, an srun task) died without a word: stop the
// ranks rather than leave them holding the node's GPUs
const parent = process.ppid
setInterval(() => {
  if (process.ppid === parent) return
  stopping = true
  stop("SIGTERM")
  setTimeout(() => stop("SIGKILL"), 10_000).unref()
}, 1000).unref()

/**
 * The failed rank in torchrun's closing summary ("Root Cause (first observed failure)", then rank,
 * exitcode and traceback fields), as one line; the same reading as the local executor's torchrunFailure.
 */
const rootCause = (all: ReadonlyArray<string>): string | undefined => {
  // torchrun's error handler indents the fields ("  rank      : 1 (local_rank: 0)")
  const lines = all.map((l) => l.trim())
  const start = lines.findLastIndex((l) => l.startsWith("Root Cause"))
  if (start < 0) return undefined
  const field = (name: string) => lines.slice(start).find((l) => l.startsWith(name))?.replace(/^[a-z_]+\s*:\s*/, "")
  const failed = field("rank")
  if (failed === undefined) return undefined
  return `torchrun: rank ${failed} failed (exit code ${field("exitcode")?.split(" ")[0] ?? "?"}): ${field("traceback") ?? "see its log"}`
}

child.on("error", (e) => fail(`could not start ${argv[0]}: ${e.message}`))
child.on("exit", (code, signal) => {
  if (partial !== "") tail.push(partial)
  // A rank of this node failed: say which, as the step's error (a protocol line on stdout, which reaches
  // the job's events on every executor). Not when this node was told to stop: its ranks then die of the
  // stop, and the node that failed first has said why.
  const cause = code !== 0 && !stopping ? rootCause(tail) : undefined
  if (cause !== undefined) {
    process.stdout.write(JSON.stringify({ type: "log", level: "error", message: `node ${rank}: ${cause}` }) + "\n")
    process.stderr.write(`anneal node: ${cause}\n`)
  }
  process.exit(code ?? (signal !== null ? 128 + 15 : 1))
})
