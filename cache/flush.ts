/**
 * Group commit for the store's flushes. Every commit must have its files, its directories and then the
 * rename that publishes it on disk before the database records it; steps that commit close together
 * (a wide DAG of small steps) would each pay their own fsyncs. Here a flush request joins the round
 * that has not started yet, and rounds run one at a time: while one round is in flight, every request
 * that arrives waits for the next round, which then covers all of them with one pass (one fsync per
 * distinct path, in parallel on libuv's threads, or, for many paths, one `syncfs` of the file system).
 * A request is answered only by a round that started after it was made, so nothing is reported durable
 * before its bytes and names are.
 */
import * as fs from "node:fs"

/** More paths than this in a round are flushed with one syncfs of their file system rather than one fsync each. */
const SYNCFS_PATHS = 16

export const fsyncPath = async (p: string): Promise<void> => {
  const h = await fs.promises.open(p, "r")
  try {
    await h.sync()
  } finally {
    await h.close()
  }
}

/** syncfs(2) of the file system holding `dir`, through `sync -f` (a child, so nothing here blocks). */
const syncfs = (dir: string): Promise<boolean> =>
  new Promise<boolean>((resolve) => {
    void import("node:child_process").then(({ execFile }) =>
      execFile("sync", ["-f", dir], { timeout: 600_000 }, (e) => resolve(e === null)), () => resolve(false))
  })

/** Flushes each path, in parallel batches; the paths that failed, with their errors. */
const fsyncEach = async (paths: ReadonlyArray<string>): Promise<Map<string, unknown>> => {
  const failed = new Map<string, unknown>()
  for (let i = 0; i < paths.length; i += 64) {
    await Promise.all(paths.slice(i, i + 64).map((p) => fsyncPath(p).catch((e: unknown) => void failed.set(p, e))))
  }
  return failed
}

interface Round {
  /** the requests' path lists, kept as given (joining one is O(1), even for 100,000 paths) */
  readonly lists: Array<ReadonlyArray<string>>
  /** settles when the round has run: the paths that could not be flushed */
  readonly done: Promise<Map<string, unknown>>
}

const noFailures = new Map<string, unknown>()

export class GroupFlusher {
  private inFlight: Promise<unknown> | undefined
  private next: Round | undefined
  /** rounds run so far (a test reads it to see that concurrent commits shared rounds) */
  rounds = 0

  /** `fsRoot` is a directory on the file system of every path flushed here (the store's root). */
  constructor(private readonly fsRoot: string) {}

  /**
   * Resolves once every path (files or directories) is durable; rejects, with the first failure among
   * its own paths, when one could not be flushed (another request's failure is not this one's).
   */
  async flush(paths: ReadonlyArray<string>): Promise<void> {
    if (paths.length === 0) return
    const failed = await this.join(paths).done
    if (failed.size === 0) return
    for (const p of paths) if (failed.has(p)) throw failed.get(p)
  }

  private join(paths: ReadonlyArray<string>): Round {
    if (this.next !== undefined) {
      this.next.lists.push(paths)
      return this.next
    }
    const lists = [paths]
    const start = (): Promise<Map<string, unknown>> => {
      if (this.next?.lists === lists) this.next = undefined
      const running = this.run(lists)
      const tracked: Promise<unknown> = running.finally(() => {
        if (this.inFlight === tracked) this.inFlight = undefined
      })
      this.inFlight = tracked
      return running
    }
    if (this.inFlight === undefined) return { lists, done: start() }
    // rounds never reject (failures are per path), so the next one always starts
    const round = { lists, done: this.inFlight.then(start, start) }
    this.next = round
    return round
  }

  private async run(lists: ReadonlyArray<ReadonlyArray<string>>): Promise<Map<string, unknown>> {
    this.rounds++
    const count = lists.reduce((n, l) => n + l.length, 0)
    if (count > SYNCFS_PATHS && (await syncfs(this.fsRoot))) return noFailures
    return fsyncEach([...new Set(lists.flat())])
  }
}
