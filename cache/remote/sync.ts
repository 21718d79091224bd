/**
 * How a run uses the remote (`anneal run --remote s3://...`, or "remote" in anneal.config.json):
 *
 * - before planning, `restore` walks the selected steps in order, asking engine/decide.ts as the plan
 *   does; a step it would run whose key the remote index knows is downloaded (checked, committed to the
 *   local store, its result recorded), so the plan then finds it cached and nothing reruns. A restore
 *   that fails (a blob gc took, a damaged object) is said and the step simply builds.
 * - during the run, every step that ran (and every cached one this store has not pushed before) is
 *   uploaded in the background: blobs, manifest, then the index entry (remote-store.ts).
 * - at the end, the run waits for its uploads; one that failed is an error naming the remote and the
 *   step (exit 1: the result is safe locally, but the remote lacks it), then the run event is passed on.
 *
 * `resolve` is restore without downloading, for `anneal plan`: which steps the remote would serve.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Store } from "../store.ts"
import type { EngineEvent, Reporter } from "../../engine/events.ts"
import type { PlannedStep } from "../../engine/graph.ts"
import { decide, presence } from "../../engine/decide.ts"
import type { DecideContext } from "../../engine/decide.ts"
import { hashSourcesOffThread, selectSteps } from "../../engine/plan.ts"
import { constructiveTraces } from "../../engine/rebuilder.ts"
import type { Project } from "../../engine/plan.ts"
import { RemoteStore } from "./remote-store.ts"
import { parseRemote } from "./url.ts"
import type { RemoteConfig } from "./url.ts"

export type { RemoteConfig }

/** Results restored from the remote have no local run: their run_id is this. */
export const REMOTE_RUN_ID = 0

const formatBytes = (n: number): string => {
  for (const [u, f] of [["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]] as const) if (n >= f) return `${(n / f).toFixed(1)}${u}`
  return `${n}B`
}

/** Keys this store has pushed to a remote (so a cached step is not re-checked against it every run). */
class PushedLog {
  private readonly file: string
  private readonly keys = new Set<string>()

  constructor(store: Store, remote: RemoteStore) {
    const dir = path.join(store.root, "remote")
    fs.mkdirSync(dir, { recursive: true })
    // the same bucket name on another server is another remote
    const id = createHash("sha256").update(`${remote.s3.endpointName} ${remote.spec.url}`).digest("hex").slice(0, 16)
    this.file = path.join(dir, `${remote.spec.bucket}-${id}.pushed`)
    try {
      for (const line of fs.readFileSync(this.file, "utf8").split("\n")) if (line !== "") this.keys.add(line)
    } catch {
      // nothing pushed yet
    }
  }

  has(key: string, output: string) {
    return this.keys.has(`${key} ${output}`)
  }

  add(key: string, output: string) {
    const line = `${key} ${output}`
    if (this.keys.has(line)) return
    this.keys.add(line)
    fs.appendFileSync(this.file, line + "\n")
  }
}

export interface RemoteRun {
  readonly remote: RemoteStore
  /** downloads what the remote can serve; returns the reporter the run should emit to */
  readonly restore: (project: Project, options: { targets?: ReadonlyArray<string> | undefined; force?: ReadonlyArray<string> | undefined }) => Promise<Reporter>
  /** waits for the uploads; the summary's exit code becomes 1 when one failed */
  readonly finish: <S extends { readonly exitCode: 0 | 1 }>(summary: S) => Promise<S>
  readonly close: () => Promise<void>
}

/** Connects to the remote (a clear one-line error when it refuses or does not answer). */
export const openRemoteRun = async (config: RemoteConfig, reporter: Reporter): Promise<RemoteRun> => {
  const remote = await RemoteStore.open(parseRemote(config))
  const uploads: Array<Promise<void>> = []
  const failures: Array<string> = []
  let heldRun: EngineEvent | undefined
  let pushed: PushedLog | undefined
  let store: Store | undefined
  const say = (level: "info" | "warn" | "error", step: string | null, message: string) => reporter.emit({ event: "log", step, level, message })

  const upload = (step: string, key: string, output: string, seconds: number) => {
    if (store === undefined || pushed === undefined || pushed.has(key, output)) return
    const s = store
    const log = pushed
    uploads.push(
      remote.push(s, output, { key, seconds }).then(
        (r) => {
          log.add(key, output)
          if (r.uploaded > 0) say("info", step, `uploaded ${step}'s output to ${remote.spec.url} (${r.uploaded} files, ${formatBytes(r.bytes)})`)
        },
        (e: unknown) => {
          failures.push(`remote ${remote.spec.url}: could not upload step "${step}": ${e instanceof Error ? e.message : String(e)}`)
        }
      )
    )
  }

  const observer: Reporter = {
    emit: (e) => {
      if (e.event === "run") {
        heldRun = e
        return
      }
      if (e.event === "step" && (e.status === "ran" || e.status === "cached") && e.output !== null && e.key !== "") {
        upload(e.step, e.key, e.output, e.seconds)
      }
      reporter.emit(e)
    },
    close: reporter.close
  }

  return {
    remote,
    restore: async (project, options) => {
      store = project.store
      pushed = new PushedLog(project.store, remote)
      const steps = selectSteps(project.graph, options.targets ?? [])
      const plan = await resolveSteps(project, steps, remote, { force: options.force ?? [], download: true, say })
      const restored = [...plan.values()].filter((r) => r.restored)
      if (restored.length > 0) {
        say("info", null, `restored ${restored.length} step${restored.length === 1 ? "" : "s"} from ${remote.spec.url} (${formatBytes(restored.reduce((s, r) => s + r.bytes, 0))})`)
      }
      // what came from the remote is there already: no need to push it back
      for (const r of plan.values()) if (r.fromRemote) pushed.add(r.key, r.output)
      return observer
    },
    finish: async (summary) => {
      await Promise.all(uploads)
      for (const f of failures) say("error", null, f)
      if (heldRun !== undefined) reporter.emit(heldRun)
      return failures.length > 0 ? { ...summary, exitCode: 1 } : summary
    },
    close: async () => {
      await Promise.allSettled(uploads)
      await remote.release().catch(() => {})
      remote.close()
    }
  }
}

export interface Resolved {
  readonly key: string
  readonly output: string
  /** the remote index served it (downloaded now, or would be by a run) */
  readonly fromRemote: boolean
  readonly restored: boolean
  readonly bytes: number
}

/**
 * Walks the steps in order (each after what it needs), asking engine/decide.ts what a run would decide:
 * a step it finds cached is taken as it is; for one it would run (unforced), the remote index is asked
 * for its key, and with `download` the artifact is pulled into the local store and the result recorded,
 * so the plan that follows finds it cached. Returns step id -> what the remote served.
 */
export const resolveSteps = async (
  project: Project,
  steps: ReadonlyArray<PlannedStep>,
  remote: RemoteStore,
  options: { force: ReadonlyArray<string>; download: boolean; say?: (level: "info" | "warn" | "error", step: string | null, message: string) => void }
): Promise<Map<string, Resolved>> => {
  const { store } = project
  const ctx: DecideContext = {
    store,
    records: store.db.stepRecords(project.recipeId),
    force: new Set(options.force),
    rebuild: constructiveTraces,
    present: presence(store),
    sources: await hashSourcesOffThread(store, steps)
  }
  const outputs = new Map<string, string>()
  const found = new Map<string, Resolved>()
  for (const step of steps) {
    const d = decide(ctx, step, outputs)
    if (d.waiting || ctx.force.has(step.id)) continue
    if (d.decision.action === "cached") {
      outputs.set(step.id, d.decision.output)
      continue
    }
    const key = d.key
    let remoteResult
    try {
      remoteResult = await remote.lookup(key)
    } catch (e) {
      throw remote.error(`could not look up step "${step.id}"`, e)
    }
    if (remoteResult === undefined) continue
    if (!options.download) {
      if ((await remote.manifest(remoteResult.output)) === undefined) continue
      outputs.set(step.id, remoteResult.output)
      found.set(step.id, { key, output: remoteResult.output, fromRemote: true, restored: false, bytes: 0 })
      continue
    }
    try {
      let bytes = 0
      if (!ctx.present(remoteResult.output)) {
        options.say?.("info", step.id, `downloading ${step.id}'s output from ${remote.spec.url}`)
        bytes = (await remote.pull(store, remoteResult.output)).bytes
      }
      store.db.putResult(key, remoteResult.output, REMOTE_RUN_ID, remoteResult.seconds)
      outputs.set(step.id, remoteResult.output)
      found.set(step.id, { key, output: remoteResult.output, fromRemote: true, restored: true, bytes })
    } catch (e) {
      options.say?.("warn", step.id, `could not restore ${step.id} from ${remote.spec.url}, building it instead: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  return found
}

/** For `anneal plan --remote`: step id -> the key the remote would serve, without downloading. */
export const planFromRemote = async (config: RemoteConfig, project: Project, steps: ReadonlyArray<PlannedStep>, force: ReadonlyArray<string>): Promise<Map<string, Resolved>> => {
  const remote = await RemoteStore.open(parseRemote(config))
  try {
    return await resolveSteps(project, steps, remote, { force, download: false })
  } finally {
    remote.close()
  }
}
