/**
 * Machine resources the scheduler hands out: CPU slots (`--jobs`), specific GPU ids, and memory.
 * A request waits until all of it fits at once (no partial holds, so no deadlock between steps that
 * each hold half of what they need); waiters are served in arrival order, but a later request that
 * fits may go ahead of an earlier one that does not (backfilling, as Slurm does).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { execa } from "execa"

export interface Request {
  readonly cpus: number
  readonly gpus: number
  readonly memoryGb: number
}

export interface Grant {
  readonly cpus: number
  readonly gpus: ReadonlyArray<number>
  readonly memoryGb: number
}

export interface Capacity {
  readonly cpus: number
  readonly gpus: ReadonlyArray<number>
  readonly memoryGb: number
}

interface Waiter {
  readonly request: Request
  readonly deferred: Deferred.Deferred<Grant>
}

export class ResourcePool {
  private freeCpus: number
  private readonly freeGpus: Array<number>
  private freeMemory: number
  private readonly waiters: Array<Waiter> = []

  constructor(readonly capacity: Capacity) {
    this.freeCpus = capacity.cpus
    this.freeGpus = [...capacity.gpus]
    this.freeMemory = capacity.memoryGb
  }

  /** Caps a request at the machine's size, so a step asking for more than exists still runs alone. */
  fit(r: Request): Request {
    return {
      cpus: Math.max(0, Math.min(r.cpus, this.capacity.cpus)),
      gpus: r.gpus,
      memoryGb: Math.max(0, Math.min(r.memoryGb, this.capacity.memoryGb))
    }
  }

  private tryTake(r: Request): Grant | undefined {
    if (r.cpus > this.freeCpus || r.gpus > this.freeGpus.length || r.memoryGb > this.freeMemory) return undefined
    this.freeCpus -= r.cpus
    this.freeMemory -= r.memoryGb
    const gpus = this.freeGpus.splice(0, r.gpus)
    return { cpus: r.cpus, gpus, memoryGb: r.memoryGb }
  }

  private give(g: Grant) {
    this.freeCpus += g.cpus
    this.freeMemory += g.memoryGb
    this.freeGpus.push(...g.gpus)
    this.freeGpus.sort((a, b) => a - b)
    for (let i = 0; i < this.waiters.length;) {
      const w = this.waiters[i]!
      const grant = this.tryTake(w.request)
      if (grant === undefined) {
        i++
        continue
      }
      this.waiters.splice(i, 1)
      Deferred.doneUnsafe(w.deferred, Effect.succeed(grant))
    }
  }

  /** Holds the resources while `use` runs; released on success, failure and interruption alike. */
  withResources<A, E, R>(request: Request, use: (grant: Grant) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    const pool = this
    const acquire = Effect.suspend(() => {
      const r = pool.fit(request)
      const now = pool.tryTake(r)
      if (now !== undefined) return Effect.succeed(now)
      return Effect.gen(function* () {
        const deferred = yield* Deferred.make<Grant>()
        const waiter = { request: r, deferred }
        pool.waiters.push(waiter)
        return yield* Deferred.await(deferred).pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              const i = pool.waiters.indexOf(waiter)
              if (i >= 0) pool.waiters.splice(i, 1)
              else if (Deferred.isDoneUnsafe(deferred)) {
                // granted in the same tick we were interrupted: give it back
                Effect.runSync(Deferred.await(deferred).pipe(Effect.map((g) => pool.give(g))))
              }
            })
          )
        )
      })
    })
    return Effect.acquireUseRelease(acquire, use, (g) => Effect.sync(() => pool.give(g)))
  }
}

/**
 * GPU ids this process may use: `--gpus` wins; else CUDA_VISIBLE_DEVICES (a scheduler such as Slurm
 * already chose them); else whatever nvidia-smi lists; else none.
 */
export const detectGpus = async (flag: ReadonlyArray<number> | undefined): Promise<ReadonlyArray<number>> => {
  if (flag !== undefined) return flag
  const visible = process.env.CUDA_VISIBLE_DEVICES
  if (visible !== undefined) {
    return visible.split(",").map((s) => s.trim()).filter((s) => /^\d+$/.test(s)).map(Number)
  }
  try {
    const r = await execa("nvidia-smi", ["--query-gpu=index", "--format=csv,noheader"], { reject: false, timeout: 10_000 })
    if (r.exitCode !== 0) return []
    return r.stdout.split("\n").map((s) => s.trim()).filter((s) => /^\d+$/.test(s)).map(Number)
  } catch {
    return []
  }
}

/** Memory the scheduler may hand out: 90% of what the machine (or its cgroup) has. */
export const detectMemoryGb = (): number => {
  let bytes = os.totalmem()
  try {
    const limit = fs.readFileSync("/sys/fs/cgroup/memory.max", "utf8").trim()
    if (/^\d+$/.test(limit)) bytes = Math.min(bytes, Number(limit))
  } catch {
    // no cgroup v2 limit
  }
  return Math.floor((bytes / 2 ** 30) * 0.9 * 10) / 10
}
