/**
 * What following many Slurm jobs costs the controller: N jobs (default 500) are submitted and kept
 * running by a fake Slurm (sbatch, squeue, scontrol, scancel as shell scripts on PATH that count their
 * calls), and the executor follows them for a window; then it counts the controller queries (squeue +
 * scontrol + sacct) made during the window, per minute, side by side:
 *
 *   before: one `scontrol show job` per job per poll (the executor without the backend's statusMany)
 *   after:  one `squeue -j a,b,c` per poll for all of them (statusMany, batched by the executor)
 *
 *   npx tsx bench/slurm-polling.ts [jobs, default 500] [poll seconds, default 10] [window seconds, default 40]
 *
 * Last line: `slurm polling, N running jobs: controller queries per minute before X, after Y (Z x fewer)`
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Fiber } from "effect"
import { makeClusterExecutor } from "../engine/executors/cluster-executor.ts"
import { makeSlurmBackend } from "../engine/executors/slurm.ts"
import type { SlurmOptions } from "../engine/executors/slurm.ts"
import { makeStoreDir, workerSpec } from "../test/executors/specs.ts"

const jobs = Number(process.argv[2] ?? 500)
const pollSeconds = Number(process.argv[3] ?? 10)
const windowSeconds = Number(process.argv[4] ?? 40)

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-slurm-polling-"))
const bin = path.join(scratch, "bin")
const state = path.join(scratch, "state")
fs.mkdirSync(bin)
fs.mkdirSync(state)
const counts = path.join(state, "calls")
const script = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 })
// every job stays RUNNING until scancel; each command appends its name to the calls file
script("sbatch", `echo sbatch >> "${counts}"\necho $$`)
script("scontrol", `echo scontrol >> "${counts}"
if [ -f "${state}/$4.cancelled" ]; then echo "JobId=$4 JobState=CANCELLED Reason=None ExitCode=0:15"; else echo "JobId=$4 JobState=RUNNING Reason=None ExitCode=0:0"; fi`)
script("squeue", `echo squeue >> "${counts}"
ids=
while [ $# -gt 0 ]; do case "$1" in -j) ids="$2"; shift ;; esac; shift; done
for id in $(echo "$ids" | tr ',' ' '); do
  if [ -f "${state}/$id.cancelled" ]; then echo "$id|CANCELLED|None"; else echo "$id|RUNNING|None"; fi
done`)
script("sacct", `echo sacct >> "${counts}"`)
script("scancel", `touch "${state}/$1.cancelled"`)
process.env.PATH = `${bin}:${process.env.PATH}`

const queries = () => {
  try {
    return fs.readFileSync(counts, "utf8").split("\n").filter((l) => l === "squeue" || l === "scontrol" || l === "sacct").length
  } catch {
    return 0
  }
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/** Follows `jobs` running jobs for the window; returns controller queries per minute during it. */
const measure = async (label: string, batched: boolean): Promise<number> => {
  const store = makeStoreDir()
  // reading the jobs' output files is not what is measured: follow them as rarely as the polls allow
  // (a follower polls at most once per follow interval)
  const options: SlurmOptions = { pollSeconds, followSeconds: Math.min(2, pollSeconds / 2) }
  const slurm = makeSlurmBackend(options)
  const backend = batched ? slurm : { ...slurm, statusMany: undefined }
  const executor = makeClusterExecutor(backend, options)
  const fibers = Array.from({ length: jobs }, () => Effect.runFork(executor.run(workerSpec(store), () => {})))
  try {
    // wait until every job is submitted (sbatch counted), then one poll for all to settle into the rhythm
    while (fs.existsSync(counts) && fs.readFileSync(counts, "utf8").split("\n").filter((l) => l === "sbatch").length < jobs) await sleep(200)
    await sleep(pollSeconds * 1000)
    const before = queries()
    const t0 = performance.now()
    await sleep(windowSeconds * 1000)
    const perMinute = ((queries() - before) / ((performance.now() - t0) / 1000)) * 60
    console.log(`${label}: ${perMinute.toFixed(0)} controller queries per minute (${jobs} jobs, a poll every ${pollSeconds} s)`)
    return perMinute
  } finally {
    await Promise.all(fibers.map((f) => Effect.runPromise(Fiber.interrupt(f))))
    fs.rmSync(store, { recursive: true, force: true })
    fs.rmSync(counts, { force: true })
  }
}

try {
  const before = await measure("before (scontrol per job)", false)
  const after = await measure("after (one squeue per poll)", true)
  console.log(`slurm polling, ${jobs} running jobs: controller queries per minute before ${before.toFixed(0)}, after ${after.toFixed(1)} (${(before / Math.max(after, 1e-9)).toFixed(0)} x fewer)`)
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
