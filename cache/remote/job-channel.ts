/**
 * A cluster job on a node that does not mount the driver's store (`"sharedFilesystem": false` in the
 * Slurm or Ray section of anneal.config.json, with a "remote"): everything the job and the driver
 * exchange goes through the remote, under one prefix per attempt:
 *
 *   jobs/<key>/attempt-<n>/orders.json        the job's orders: job.json and spec.json as the driver wrote
 *                                             them (driver paths), the driver's attempt dir, and which
 *                                             input paths are store artifacts (by hash)
 *   jobs/<key>/attempt-<n>/events/<seq>       the worker's stdout (protocol lines), in batches of bytes
 *   jobs/<key>/attempt-<n>/log/<seq>          its stderr, likewise
 *   jobs/<key>/attempt-<n>/exit.json          the exit status, with the output artifact's hash; last
 *
 * Driver side (this module): `prepare` uploads the artifacts the step reads (content-addressed, skipped
 * when the remote has them: RemoteStore.push) and then the orders; the job's command is then
 * cache/remote/node-job.ts, which runs the step in a node-local scratch store (see there). While the job
 * runs, `sync` copies new batches into the driver's own attempt directory (events.jsonl, worker.log),
 * so the executor follows them as it follows files on a shared filesystem; once exit.json appears, the
 * output artifact is downloaded (every blob checked) into the attempt's output/ and only then is the
 * local exit.json written. The engine commits that output as it commits any step's.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { createRequire } from "node:module"
import { Store } from "../store.ts"
import type { StepSpec } from "../../engine/spec.ts"
import { attemptFiles, writeAtomic } from "../../engine/executors/cluster-job.ts"
import type { ExitStatus } from "../../engine/executors/cluster-job.ts"
import { RemoteStore } from "./remote-store.ts"
import { parseRemote } from "./url.ts"
import type { RemoteConfig } from "./url.ts"

/** What node-job.ts is given on its command line: no secret (credentials come from the node's environment). */
export interface NodeJobArgs {
  readonly remote: RemoteConfig
  /** `<key>/attempt-<n>`, under the remote's jobs/ */
  readonly job: string
  /** the node-local directory for the scratch store and the job's files; default $TMPDIR/anneal-node */
  readonly scratch?: string | undefined
  /** the scratch store's size cap and age limit (cache/remote/scratch-gc.ts); defaults there */
  readonly scratchMaxGb?: number | undefined
  readonly scratchMaxAgeDays?: number | undefined
}

/** The executor's scratch settings (its section of anneal.config.json), as the node job gets them. */
export interface ScratchSettings {
  readonly scratchDir?: string | undefined
  readonly scratchMaxGb?: number | undefined
  readonly scratchMaxAgeDays?: number | undefined
}

export interface JobOrders {
  readonly version: 1
  readonly key: string
  readonly step: string
  readonly kind: string
  /** the driver's attempt directory: every path under it is the job's own, and moves to the node's scratch */
  readonly attemptDir: string
  /** job.json and spec.json as the driver wrote them */
  readonly job: unknown
  readonly spec: StepSpec
  /** driver path -> artifact hash, for each input the node must download */
  readonly artifacts: Readonly<Record<string, string>>
}

/** The remote's exit record: the runner's exit status, and the output's hash when the step succeeded. */
export interface RemoteExit extends ExitStatus {
  readonly output?: string | undefined
  /** why the node could not publish the output (or stage the inputs) */
  readonly error?: string | undefined
}

export const jobPrefix = (remote: RemoteStore, job: string): string => `${remote.sectionPrefix("jobs")}${job}/`
export const chunkName = (seq: number): string => String(seq).padStart(8, "0")

// beside this module: node-job.ts in the sources (run through tsx's loader), node-job.js once built
const ext = path.extname(fileURLToPath(import.meta.url))
const nodeJobScript = fileURLToPath(new URL(`./node-job${ext}`, import.meta.url))

/** The command a node runs for a job in this mode: node [--import tsx] node-job.ts ARGS-JSON. */
export const nodeJobCommand = (node: string, args: NodeJobArgs): Array<string> => {
  const loader = ext === ".ts" ? ["--import", pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm")).href] : []
  return [node, ...loader, nodeJobScript, JSON.stringify(args)]
}

/** Input paths of `spec` that are artifacts of the store at `storeRoot` (the rest are sources). */
const inputArtifactsOf = (spec: StepSpec, storeRoot: string): Record<string, string> => {
  const artifacts: Record<string, string> = {}
  for (const [port, value] of Object.entries(spec.inputs)) {
    const paths = Array.isArray(value) ? value : [value as string]
    const hs = spec.inputHashes[port]
    const hashes = Array.isArray(hs) ? hs : [hs as string]
    paths.forEach((p, i) => {
      if (hashes[i] !== undefined && path.resolve(p) === path.join(storeRoot, "artifacts", hashes[i]!)) artifacts[p] = hashes[i]!
    })
  }
  return artifacts
}

/** The driver's half, one per executor: the remote connection and the driver's store, opened on first use. */
export class RemoteJobs {
  private remoteP: Promise<RemoteStore> | undefined
  private readonly stores = new Map<string, Store>()

  constructor(readonly config: RemoteConfig) {}

  remote(): Promise<RemoteStore> {
    this.remoteP ??= RemoteStore.open(parseRemote(this.config, "the cluster executor's remote"))
    return this.remoteP
  }

  private storeAt(root: string): Store {
    let s = this.stores.get(root)
    if (s === undefined) this.stores.set(root, (s = Store.open(root)))
    return s
  }

  /**
   * Uploads what the job reads (skipping what the remote has) and then its orders; returns the job's
   * command for the cluster. `storeRoot` is the driver's store (the one the spec's inputs live in).
   */
  async prepare(node: string, spec: StepSpec, attempt: number, attemptDir: string, job: unknown, remoteSpec: StepSpec, scratch: ScratchSettings): Promise<Array<string>> {
    const remote = await this.remote()
    const storeRoot = path.dirname(path.dirname(spec.resumeDir))
    const artifacts = inputArtifactsOf(spec, storeRoot)
    const hashes = [...new Set(Object.values(artifacts))]
    if (hashes.length > 0) {
      const store = this.storeAt(storeRoot)
      for (const h of hashes) await remote.push(store, h)
    }
    // The attempt before this one has no further use: the executor submits only once it is not live.
    // Its objects are left when no driver saw it end (the driver was killed -9, or died between writing
    // the orders and submitting): removed here, or they would stay in the remote for good.
    if (attempt > 1) await this.removeAttempt(remote, `${spec.key}/attempt-${attempt - 1}`)
    const name = `${spec.key}/attempt-${attempt}`
    const orders: JobOrders = { version: 1, key: spec.key, step: spec.step, kind: spec.kind, attemptDir, job, spec: remoteSpec, artifacts }
    await remote.s3.putBytes(`${jobPrefix(remote, name)}orders.json`, JSON.stringify(orders))
    return nodeJobCommand(node, {
      remote: this.config,
      job: name,
      ...(scratch.scratchDir !== undefined ? { scratch: scratch.scratchDir } : {}),
      ...(scratch.scratchMaxGb !== undefined ? { scratchMaxGb: scratch.scratchMaxGb } : {}),
      ...(scratch.scratchMaxAgeDays !== undefined ? { scratchMaxAgeDays: scratch.scratchMaxAgeDays } : {})
    })
  }

  /** Deletes an attempt's objects (its output stays: it is content-addressed). */
  async removeAttempt(remote: RemoteStore, name: string): Promise<void> {
    for (const o of await remote.s3.list(jobPrefix(remote, name))) await remote.s3.delete(o.key)
  }

  /** Follows one attempt: copies its batches into the attempt dir, and its output and exit once it ended. */
  follow(key: string, attempt: number, attemptDir: string): JobMirror {
    return new JobMirror(this, `${key}/attempt-${attempt}`, attemptDir)
  }

  close() {
    for (const s of this.stores.values()) s.close()
    this.stores.clear()
    const p = this.remoteP
    this.remoteP = undefined
    void p?.then(async (r) => {
      await r.release().catch(() => {})
      r.close()
    }, () => {})
  }
}

export class JobMirror {
  private seq = { events: 0, log: 0 }
  private exited = false
  /** the last thing that went wrong talking to the remote, for the step's error */
  problem: string | undefined

  constructor(private readonly jobs: RemoteJobs, private readonly name: string, private readonly attemptDir: string) {
    // the batches are copied from the first again (a driver that restarted and re-attached starts over,
    // as its followers do): what an earlier driver copied here goes, so no line is seen twice
    const files = attemptFiles(attemptDir)
    fs.rmSync(files.events, { force: true })
    fs.rmSync(files.log, { force: true })
  }

  /** Appends the events and log batches that appeared since the last look, in order. */
  private async copyBatches(remote: Awaited<ReturnType<RemoteJobs["remote"]>>, prefix: string, files: ReturnType<typeof attemptFiles>): Promise<void> {
    for (const [stream, file] of [["events", files.events], ["log", files.log]] as const) {
      for (;;) {
        const body = await remote.s3.getBytes(`${prefix}${stream}/${chunkName(this.seq[stream])}`)
        if (body === undefined) break
        fs.appendFileSync(file, body)
        this.seq[stream]++
      }
    }
  }

  /** One round: new batches appended here; the output and exit record once the job left them. True once exited. */
  async sync(): Promise<boolean> {
    if (this.exited) return true
    try {
      const remote = await this.jobs.remote()
      const prefix = jobPrefix(remote, this.name)
      const files = attemptFiles(this.attemptDir)
      fs.mkdirSync(this.attemptDir, { recursive: true })
      await this.copyBatches(remote, prefix, files)
      const body = await remote.s3.getBytes(`${prefix}exit.json`)
      if (body === undefined) return false
      // the batches the node flushed before its exit record are all there now: one more look for them
      await this.copyBatches(remote, prefix, files)
      const exit = JSON.parse(body.toString("utf8")) as RemoteExit
      if (exit.error !== undefined) fs.appendFileSync(files.log, `anneal node: ${exit.error}\n`)
      if (exit.code === 0 && exit.output !== undefined) {
        const part = `${files.output}.part`
        fs.rmSync(part, { recursive: true, force: true })
        fs.mkdirSync(part, { recursive: true })
        await remote.download(exit.output, part)
        fs.rmSync(files.output, { recursive: true, force: true })
        fs.renameSync(part, files.output)
      }
      // last: the executor takes the exit record as "everything the job left is here"
      writeAtomic(files.exit, JSON.stringify({ code: exit.code, signal: exit.signal, host: exit.host, at: exit.at }) + "\n")
      this.exited = true
      return true
    } catch (e) {
      this.problem = `the job's exchange through the remote: ${e instanceof Error ? e.message : String(e)}`
      return false
    }
  }

  /** Keeps syncing until the exit record is here or `ms` passed. */
  async waitForExit(ms: number): Promise<boolean> {
    const until = Date.now() + ms
    for (;;) {
      if (await this.sync()) return true
      if (Date.now() >= until) return false
      await new Promise((ok) => setTimeout(ok, 250))
    }
  }

  /** Deletes the attempt's objects from the remote (its output artifact stays: it is content-addressed). */
  async remove(): Promise<void> {
    await this.jobs.removeAttempt(await this.jobs.remote(), this.name)
  }
}
