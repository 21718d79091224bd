/**
 * Machine resources the scheduler hands out: CPU slots (`--jobs`), specific GPU ids, and memory.
 *
 * A request is a gang: a step that runs N processes (torchrun, a multi-node job) asks for all of their
 * CPUs, GPUs and memory as one request, and gets all of it at once or waits holding nothing, so two gangs
 * that each need most of the machine run one after the other instead of each holding half of what it
 * needs (no partial gangs, no deadlock).
 *
 * Waiters are served in arrival order, with a reservation for the head of the queue: when the first
 * waiter does not fit, what it still needs is set aside, and later requests may start only in what is
 * left beyond it (backfilling that cannot delay the head, as Slurm's backfill does, but without run-time
 * estimates: per resource, only the surplus over the head's request is lent). A large request is
 * therefore never starved by a stream of small ones that would each fit in the gaps.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"

/** What a step asks for, in total over all its processes. */
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

interface Free {
  readonly cpus: number
  readonly gpus: number
  readonly memoryGb: number
}

const fits = (r: Request, free: Free): boolean => r.cpus <= free.cpus && r.gpus <= free.gpus && r.memoryGb <= free.memoryGb

/** What may be lent to later requests while `head` waits: per resource, the free amount beyond its request. */
const beyond = (free: Free, head: Request): Free => ({
  cpus: Math.max(0, free.cpus - head.cpus),
  gpus: Math.max(0, free.gpus - head.gpus),
  memoryGb: Math.max(0, free.memoryGb - head.memoryGb)
})

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

  /** How many requests wait (for tests and the live view). */
  get waiting(): number {
    return this.waiters.length
  }

  private get free(): Free {
    return { cpus: this.freeCpus, gpus: this.freeGpus.length, memoryGb: this.freeMemory }
  }

  private take(r: Request): Grant {
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
    this.dispatch()
  }

  /**
   * Grants waiters in arrival order. The first one that does not fit becomes the reserved head: every
   * later waiter is granted only from what is free beyond the head's request. Once that leaves no CPU,
   * only a waiter asking for none could still start: without one the scan stops there (a wide DAG keeps
   * thousands waiting, and every release scanned them all).
   */
  private dispatch() {
    let head: Request | undefined
    let available = this.free
    for (let i = 0; i < this.waiters.length;) {
      if (head !== undefined && available.cpus <= 0 && this.cpuless === 0) return
      const w = this.waiters[i]!
      if (!fits(w.request, available)) {
        if (head === undefined) {
          head = w.request
          available = beyond(this.free, head)
        }
        i++
        continue
      }
      this.dequeue(i)
      Deferred.doneUnsafe(w.deferred, Effect.succeed(this.take(w.request)))
      available = head === undefined ? this.free : beyond(this.free, head)
    }
  }

  /** waiters whose request has no CPU in it */
  private cpuless = 0

  private enqueue(w: Waiter) {
    this.waiters.push(w)
    if (w.request.cpus <= 0) this.cpuless++
  }

  private dequeue(i: number) {
    const [w] = this.waiters.splice(i, 1)
    if (w !== undefined && w.request.cpus <= 0) this.cpuless--
  }

  /**
   * Holds the resources while `use` runs; released on success, failure and interruption alike, or
   * earlier when `use` calls `release` (a step whose process has ended gives its slots to the next one
   * while its output is committed). Released once either way.
   */
  withResources<A, E, R>(request: Request, use: (grant: Grant, release: () => void) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    const pool = this
    const acquire = Effect.suspend(() => {
      const r = pool.fit(request)
      // nobody waiting: no one to reserve for
      if (pool.waiters.length === 0 && fits(r, pool.free)) return Effect.succeed(pool.take(r))
      return Effect.gen(function* () {
        const deferred = yield* Deferred.make<Grant>()
        const waiter = { request: r, deferred }
        pool.enqueue(waiter)
        // a newcomer may fit in the surplus beyond the head's reservation
        pool.dispatch()
        // the acquisition of acquireUseRelease is uninterruptible; waiting must not be (an interrupted run
        // stops its waiting steps), and a grant that raced with the interrupt is given back below
        return yield* Effect.interruptible(Deferred.await(deferred)).pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              const i = pool.waiters.indexOf(waiter)
              if (i >= 0) {
                pool.dequeue(i)
                // the head leaving lifts its reservation
                if (i === 0) pool.dispatch()
              } else if (Deferred.isDoneUnsafe(deferred)) {
                // granted in the same tick we were interrupted: give it back
                Effect.runSync(Deferred.await(deferred).pipe(Effect.map((g) => pool.give(g))))
              }
            })
          )
        )
      })
    })
    return Effect.suspend(() => {
      let given = false
      const giveBack = (g: Grant) => {
        if (given) return
        given = true
        pool.give(g)
      }
      return Effect.acquireUseRelease(acquire, (g) => use(g, () => giveBack(g)), (g) => Effect.sync(() => giveBack(g)))
    })
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
    // Node's own execFile, not execa: a fully cached run would load execa's ~145 modules for this alone
    const { execFile } = await import("node:child_process")
    const out = await new Promise<string | undefined>((ok) =>
      execFile("nvidia-smi", ["--query-gpu=index", "--format=csv,noheader"], { timeout: 10_000 }, (e, stdout) => ok(e === null ? stdout : undefined))
    )
    if (out === undefined) return []
    return out.split("\n").map((s) => s.trim()).filter((s) => /^\d+$/.test(s)).map(Number)
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
