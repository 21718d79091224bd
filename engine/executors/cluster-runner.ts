/**
 * Runs one step on a cluster node, as Slurm's batch script or Ray's job entrypoint:
 *
 *   node engine/executors/cluster-runner.ts <store>/jobs/<key>/attempt-<n>/job.json
 *
 * It is started by Node itself (type stripping), so it imports nothing but Node's built-ins. It empties
 * the job's output directory (a requeued job starts clean; its checkpoints live in the resume dir),
 * points the spec at the GPUs the cluster assigned (CUDA_VISIBLE_DEVICES), runs the command from the
 * job file (`anneal exec-step SPEC.json`) with stdout appended to events.jsonl and stderr to
 * worker.log, forwards SIGTERM (scancel, ray job stop) to it, turns SIGUSR1 (the time limit is near)
 * into a checkpoint request file the training loop polls, and records the exit status in
 * exit.json, written atomically, so a driver can learn the outcome even after the cluster has
 * forgotten the job. Its own exit code is the step's.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import { execFileSync, spawn } from "node:child_process"
import type { RunnerJob } from "./cluster-job.ts"

const killGraceMs = 10_000

/** A Slurm node's address as slurm.conf gives it (NodeAddr), which may differ from its name. */
const slurmNodeAddress = (name: string | undefined): string | undefined => {
  if (name === undefined) return undefined
  try {
    const line = execFileSync("scontrol", ["show", "node", "-o", name], { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "ignore"] })
    return /(?:^|\s)NodeAddr=(\S+)/.exec(line)?.[1]
  } catch {
    return undefined
  }
}

const fail = (message: string): never => {
  process.stderr.write(`anneal runner: ${message}\n`)
  process.exit(2)
}

const jobFile = process.argv[2] ?? fail("usage: cluster-runner.ts JOB.json")
let job: RunnerJob
try {
  job = JSON.parse(fs.readFileSync(jobFile, "utf8")) as RunnerJob
} catch (e) {
  fail(`cannot read ${jobFile}: ${(e as Error).message}`)
}

fs.rmSync(job!.exit, { force: true })
if (job!.env.ANNEAL_CHECKPOINT_REQUEST !== undefined) fs.rmSync(job!.env.ANNEAL_CHECKPOINT_REQUEST, { force: true })
fs.rmSync(job!.output, { recursive: true, force: true })
fs.mkdirSync(job!.output, { recursive: true })

const env: Record<string, string | undefined> = { ...process.env, ...job!.env }
// set by cache/remote/node-job.ts (nodes without a shared filesystem), watched below; the step has no use for it
const watchedParent = env.ANNEAL_RUNNER_PARENT
delete env.ANNEAL_RUNNER_PARENT
if (job!.gang !== undefined && process.env.SLURM_JOB_ID !== undefined) {
  // a multi-node step on Slurm: this batch shell runs on the allocation's first node, which hosts the
  // rendezvous; srun starts cluster-node.ts once per node with this address
  env.ANNEAL_MASTER_ADDR = slurmNodeAddress(process.env.SLURMD_NODENAME) ?? os.hostname()
  env.ANNEAL_MASTER_PORT = String(20000 + (Number(process.env.SLURM_JOB_ID) % 20000))
}
const visible = (process.env.CUDA_VISIBLE_DEVICES ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
if (job!.gpus === 0) {
  env.CUDA_VISIBLE_DEVICES = ""
} else if (job!.gang === undefined && visible.length > 0 && visible.every((s) => /^\d+$/.test(s))) {
  const spec = JSON.parse(fs.readFileSync(job!.spec, "utf8")) as { devices: { gpus: Array<number> } }
  spec.devices.gpus = visible.map(Number)
  fs.writeFileSync(job!.spec, JSON.stringify(spec, null, 2) + "\n")
}

const out = fs.openSync(job!.events, "a")
const err = fs.openSync(job!.log, "a")
fs.writeSync(err, `anneal runner: ${job!.argv.join(" ")} on ${os.hostname()} (CUDA_VISIBLE_DEVICES=${env.CUDA_VISIBLE_DEVICES ?? ""})\n`)
const child = spawn(job!.argv[0]!, job!.argv.slice(1), { cwd: job!.cwd, env, stdio: ["ignore", out, err] })

let killTimer: NodeJS.Timeout | undefined
let stoppedBy: NodeJS.Signals | undefined
const stop = (signal: NodeJS.Signals) => {
  stoppedBy ??= signal
  child.kill("SIGTERM")
  killTimer ??= setTimeout(() => child.kill("SIGKILL"), killGraceMs)
  process.stderr.write(`anneal runner: ${signal}, stopping the step\n`)
}
process.on("SIGTERM", () => stop("SIGTERM"))
// Slurm's warning before the time limit (sbatch --signal=B:USR1@N): the step's training loop polls for
// this file (ANNEAL_CHECKPOINT_REQUEST, python/anneal_worker/protocol.py checkpoint_requested) and saves a
// checkpoint; the job then ends at its limit and a retry resumes from that checkpoint
const checkpointRequest = job!.env.ANNEAL_CHECKPOINT_REQUEST
process.on("SIGUSR1", () => {
  process.stderr.write("anneal runner: SIGUSR1, the time limit is near: asking the step for a checkpoint\n")
  if (checkpointRequest !== undefined) fs.writeFileSync(checkpointRequest, new Date().toISOString() + "\n")
})
process.on("SIGINT", () => stop("SIGINT"))
// Under node-job.ts the runner's parent is the job's own process. Killed -9 there (the OOM killer, a
// kill on the node), it can stop nothing, and the cluster may not either: Ray reports the job failed
// but leaves the rest of the entrypoint's processes running. The step would then run on beside the
// next attempt, writing into the same resume directory in the node's scratch store (a data step's shard
// markers). So the runner stops the step as it would on SIGTERM once its parent is gone (reparented).
if (watchedParent !== undefined) {
  const watch = setInterval(() => {
    if (String(process.ppid) === watchedParent) return
    clearInterval(watch)
    stop("SIGTERM")
  }, 1000)
  watch.unref()
}

let finished = false
const finish = (code: number | null, signal: NodeJS.Signals | null) => {
  if (finished) return
  finished = true
  if (killTimer !== undefined) clearTimeout(killTimer)
  const tmp = `${job!.exit}.tmp`
  fs.writeFileSync(tmp, JSON.stringify({ code, signal, host: os.hostname(), at: new Date().toISOString() }) + "\n")
  fs.renameSync(tmp, job!.exit)
  fs.closeSync(out)
  fs.closeSync(err)
  if (stoppedBy !== undefined) {
    // die by the signal we were sent, as a shell would: the cluster tells "killed" from "failed" by it
    process.removeAllListeners(stoppedBy)
    process.kill(process.pid, stoppedBy)
    return
  }
  process.exit(code ?? 128 + (signal !== null ? (os.constants.signals[signal] ?? 0) : 0))
}
child.on("error", (e) => {
  fs.writeSync(err, `anneal runner: could not start ${job!.argv[0]}: ${e.message}\n`)
  finish(127, null)
})
child.on("exit", finish)
