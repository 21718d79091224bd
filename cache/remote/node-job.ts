/**
 * A cluster job's node side when the node does not mount the driver's store (job-channel.ts):
 *
 *   node [--import tsx] cache/remote/node-job.ts '{"remote":"s3://...","job":"<key>/attempt-<n>"}'
 *
 * 1. reads the job's orders from the remote, with the node's own AWS credentials (environment or profile);
 * 2. downloads the artifacts the step reads into a node-local scratch store (`<scratch>/store`, checked
 *    and committed there; a later job on this node that reads the same artifact finds it) and points the
 *    spec at them; the job's own files (spec, output, logs, exit status) move from the driver's attempt
 *    directory to `<scratch>/jobs/<key>-a<n>-<pid>/`, its resume directory into the scratch store's;
 * 3. runs the step through engine/executors/cluster-runner.ts, as a shared-filesystem job does, and
 *    sends its stdout (protocol lines) and stderr to the remote in batches, every second;
 * 4. once the step exited 0, commits its output into the scratch store and uploads it (blobs, then
 *    manifest: never visible in part); last, the exit record with the output's hash. A step that failed,
 *    or an output that could not be uploaded, leaves an exit record without one;
 * 5. collects the scratch store (cache/remote/scratch-gc.ts): what other live jobs on the node use
 *    stays, the most recently used rest within `scratchMaxGb` and `scratchMaxAgeDays`.
 *
 * Several jobs may share a node's scratch store at once. Each is a live run of it (Store.beginRun): it
 * leases every input before it checks it and its output as it commits it, so another job's collection
 * leaves them alone; it holds its key's lock there, so its checkpoints stay; it touches each input it
 * reuses, so the collection keeps what consecutive steps on the node share.
 *
 * SIGTERM and SIGINT (scancel, ray job stop) and SIGUSR1 (the time limit is near) go to the runner.
 * It exits as the runner did, after removing the job's scratch directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Store } from "../store.ts"
import { thisHost } from "../liveness.ts"
import type { StepSpec } from "../../engine/spec.ts"
import type { RunnerJob } from "../../engine/executors/cluster-job.ts"
import { stageInputs, publishOutput } from "./node-io.ts"
import { RemoteStore } from "./remote-store.ts"
import { chunkName, jobPrefix } from "./job-channel.ts"
import type { JobOrders, NodeJobArgs, RemoteExit } from "./job-channel.ts"
import { parseRemote } from "./url.ts"
import { collectScratch, describeScratch, scratchPolicy } from "./scratch-gc.ts"

const ext = path.extname(fileURLToPath(import.meta.url))
const runnerScript = fileURLToPath(new URL(`../../engine/executors/cluster-runner${ext}`, import.meta.url))

const say = (message: string) => process.stderr.write(`anneal node: ${message}\n`)

/** Sends what a growing file gained since the last call, as the next numbered object. */
class Batcher {
  private offset = 0
  private seq = 0
  constructor(private readonly remote: RemoteStore, private readonly file: string, private readonly prefix: string) {}

  /**
   * Numbers continue after the batches already there: a job the cluster requeued runs this again under
   * the same attempt, and the driver, which has read the first run's batches, reads on from there.
   */
  async start(): Promise<void> {
    this.seq = (await this.remote.s3.list(this.prefix)).length
  }

  async flush(): Promise<void> {
    let size: number
    try {
      size = fs.statSync(this.file).size
    } catch {
      return
    }
    if (size <= this.offset) return
    const fd = fs.openSync(this.file, "r")
    try {
      const buf = Buffer.alloc(size - this.offset)
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset)
      await this.remote.s3.putBytes(`${this.prefix}${chunkName(this.seq)}`, buf.subarray(0, n), "application/octet-stream")
      this.offset += n
      this.seq++
    } finally {
      fs.closeSync(fd)
    }
  }
}

const main = async (): Promise<number> => {
  let args: NodeJobArgs
  try {
    args = JSON.parse(process.argv[2] ?? "") as NodeJobArgs
  } catch {
    say("usage: node-job.ts '{\"remote\": \"s3://...\", \"job\": \"<key>/attempt-<n>\"}'")
    return 2
  }
  const remote = await RemoteStore.open(parseRemote(args.remote, "the job's remote"))
  const prefix = jobPrefix(remote, args.job)
  const putExit = (exit: RemoteExit) => remote.s3.putBytes(`${prefix}exit.json`, JSON.stringify(exit))
  const ordersBody = await remote.s3.getBytes(`${prefix}orders.json`)
  if (ordersBody === undefined) {
    // the driver cancelled the job and removed its orders before it started: nothing to do
    say(`no orders at ${remote.spec.url}/jobs/${args.job} (cancelled?)`)
    remote.close()
    return 2
  }
  const orders = JSON.parse(ordersBody.toString("utf8")) as JobOrders
  const scratch = args.scratch ?? path.join(os.tmpdir(), "anneal-node")
  const storeRoot = path.join(scratch, "store")
  const store = Store.open(storeRoot)
  // a live run of the scratch store: leases what it reads, so other jobs' collections leave it alone
  store.beginRun()
  store.db.tryLock(orders.key, orders.step, "node-job")
  const jobsDir = path.join(scratch, "jobs")
  // pid and host in the name: the collection removes the directories of dead jobs on this host only
  const jobDir = path.join(jobsDir, `${orders.key.slice(0, 16)}-${path.basename(args.job)}-${process.pid}@${thisHost()}`)
  fs.rmSync(jobDir, { recursive: true, force: true })
  fs.mkdirSync(jobDir, { recursive: true })
  // the job's files: every path under the driver's attempt dir is the job's own, and lives here instead
  const moved = <T>(value: T): T => JSON.parse(JSON.stringify(value).split(orders.attemptDir).join(jobDir)) as T
  const job = moved(orders.job) as RunnerJob
  const events = new Batcher(remote, job.events, `${prefix}events/`)
  const log = new Batcher(remote, job.log, `${prefix}log/`)
  await Promise.all([events.start(), log.start()])
  try {
    let spec = moved(orders.spec)
    spec = { ...spec, resumeDir: store.resumeDir(orders.key) }
    try {
      spec = await stageInputs(remote, store, spec, { artifactPath: (h) => Object.entries(orders.artifacts).find(([, x]) => x === h)?.[0] ?? "\0" })
      // the collection keeps the most recently used: a reused input counts as used now
      for (const h of new Set(Object.values(orders.artifacts))) store.db.touchArtifact(h)
    } catch (e) {
      const error = `could not download the inputs of ${orders.step}: ${e instanceof Error ? e.message : String(e)}`
      say(error)
      await putExit({ code: 1, signal: null, host: os.hostname(), at: new Date().toISOString(), error })
      return 1
    }
    fs.writeFileSync(job.spec, JSON.stringify(spec, null, 2) + "\n")
    const jobFile = path.join(jobDir, "job.json")
    fs.writeFileSync(jobFile, JSON.stringify(job, null, 2) + "\n")

    // the runner stops the step if this process is killed -9 (cluster-runner.ts): no orphan races the next attempt
    const child = spawn(process.execPath, [runnerScript, jobFile], { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ANNEAL_RUNNER_PARENT: String(process.pid) } })
    let stoppedBy: NodeJS.Signals | undefined
    for (const signal of ["SIGTERM", "SIGINT", "SIGUSR1"] as const) {
      process.on(signal, () => {
        if (signal !== "SIGUSR1") stoppedBy ??= signal
        child.kill(signal)
      })
    }
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) => {
      child.on("exit", (code, signal) => ok({ code, signal }))
      child.on("error", (e) => {
        say(`could not start the runner: ${e.message}`)
        ok({ code: 127, signal: null })
      })
    })
    let done = false
    const pump = (async () => {
      while (!done) {
        await Promise.all([events.flush(), log.flush()]).catch((e: unknown) => say(`could not send the job's output: ${e instanceof Error ? e.message : String(e)}`))
        await new Promise((ok) => setTimeout(ok, 1000))
      }
    })()
    const status = await ended
    done = true
    await pump
    let exit: RemoteExit
    try {
      exit = JSON.parse(fs.readFileSync(job.exit, "utf8")) as RemoteExit
    } catch {
      exit = { code: status.code ?? 1, signal: status.signal, host: os.hostname(), at: new Date().toISOString() }
    }
    if (exit.code === 0) {
      try {
        const hash = await publishOutput(remote, store, job.output, orders.kind, { step: orders.step, key: orders.key, builtOn: os.hostname() })
        exit = { ...exit, output: hash }
        // finished: its checkpoints are of no further use (the driver removes its own likewise)
        fs.rmSync(store.resumeDir(orders.key), { recursive: true, force: true })
      } catch (e) {
        const error = `could not upload the output of ${orders.step}: ${e instanceof Error ? e.message : String(e)}`
        say(error)
        exit = { ...exit, code: 1, error }
      }
    }
    await Promise.all([events.flush(), log.flush()])
    await putExit(exit)
    if (stoppedBy !== undefined) return 128 + (os.constants.signals[stoppedBy] ?? 15)
    return exit.code ?? 1
  } finally {
    fs.rmSync(jobDir, { recursive: true, force: true })
    store.db.unlock(orders.key)
    store.close()
    await remote.release().catch(() => {})
    remote.close()
    collect(storeRoot, jobsDir, args)
  }
}

/**
 * The scratch store's collection as the job ends, with this job's leases released (its inputs and
 * output are the most recently used: kept first within the cap). A failure is a line in the job's log,
 * never the job's exit status: the step's outcome is already in the remote.
 */
const collect = (storeRoot: string, jobsDir: string, args: NodeJobArgs) => {
  try {
    const store = Store.open(storeRoot)
    try {
      const policy = scratchPolicy(storeRoot, { maxGb: args.scratchMaxGb, maxAgeDays: args.scratchMaxAgeDays })
      say(describeScratch(collectScratch(store, policy, { jobsDir }), policy))
    } finally {
      store.close()
    }
  } catch (e) {
    say(`could not collect the scratch store ${storeRoot}: ${e instanceof Error ? e.message : String(e)}`)
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    say(e instanceof Error ? e.message : String(e))
    process.exit(1)
  }
)
