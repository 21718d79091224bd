/**
 * The flagged (training row, benchmark item) pairs of the decontamination steps, in memory bounded by
 * `examples` and review.md's listing however many pairs there are: a leak such as licence boilerplate
 * can flag most rows of a corpus (millions of pairs; holding them got a shard worker killed at 5 GB).
 * - A shard task (or decontaminate-semantic's matching stage, py/semantic_shards.py) streams its pairs to
 *   `pairs.jsonl` in its task directory, one line a pair in row order, and returns only its counts per
 *   category and its first `examples` pairs.
 * - The step concatenates the tasks' files in input order into `flagged.jsonl` in its output. The task
 *   files lie beside the tasks' `rows.jsonl` and reach the step the same way (a shared filesystem, or the
 *   node-local resume directory when the whole step runs on a node without one), so the artifact is the
 *   same bytes for any cut, worker count or executor. While copying it parses lines only until it holds
 *   the first pairs of each category that review.md lists; after that it copies bytes.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { categories, categoryRecord, type Category, type ReviewListing, type ReviewPair } from "./review.ts"
import { LineBlocks } from "./writer.ts"

/** A task's pairs, in its task directory. */
export const taskPairsFile = "pairs.jsonl"
/** Every pair of the step, in its output. */
export const flaggedFile = "flagged.jsonl"

export type CategoryCounts = Record<Category, number>

export const noPairs = (): CategoryCounts => categoryRecord(() => 0)

/** What a task tells the step about its pairs (the pairs themselves are in its file). */
export interface TaskPairs {
  readonly flaggedPairs: number
  readonly byCategory: CategoryCounts
  /** its first pairs, at most the step's `examples` */
  readonly examples: ReadonlyArray<ReviewPair>
}

/** A task's pairs: each written to `<dir>/pairs.jsonl` as it comes; only counts and examples stay. */
export class PairLog {
  private readonly byCategory = noPairs()
  private readonly examples: Array<ReviewPair> = []
  private total = 0
  private readonly fd: number
  private readonly lines: LineBlocks
  private closed = false

  constructor(dir: string, private readonly maxExamples: number) {
    this.fd = fs.openSync(path.join(dir, taskPairsFile), "w")
    this.lines = new LineBlocks(this.fd)
  }

  add(pair: ReviewPair): void {
    this.total++
    this.byCategory[pair.category]++
    if (this.examples.length < this.maxExamples) this.examples.push(pair)
    this.lines.push(JSON.stringify(pair) + "\n")
  }

  /** Writes what is buffered and closes the file (again: nothing). */
  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.lines.flush()
    } finally {
      fs.closeSync(this.fd)
    }
  }

  finish(): TaskPairs {
    this.close()
    return { flaggedPairs: this.total, byCategory: this.byCategory, examples: this.examples }
  }
}

/** The tasks' figures summed, and their first `examples` pairs in task (= input) order. */
export const mergeTaskPairs = (tasks: ReadonlyArray<TaskPairs>, examples: number): TaskPairs => {
  const byCategory = noPairs()
  const first: Array<ReviewPair> = []
  let total = 0
  for (const t of tasks) {
    total += t.flaggedPairs
    for (const c of categories) byCategory[c] += t.byCategory[c] ?? 0
    for (const p of t.examples) if (first.length < examples) first.push(p)
  }
  return { flaggedPairs: total, byCategory, examples: first }
}

/**
 * Concatenates the pair files (in the order given) into `<outDir>/flagged.jsonl` and returns review.md's
 * listing: the counts given and the first `perCategory` pairs of each category. Fails when a file is
 * missing or the files hold another number of pairs than `counts` says (a task's file and its result
 * disagree: never silently a partial list).
 */
export const writeFlagged = (
  files: ReadonlyArray<string>,
  outDir: string,
  counts: Pick<TaskPairs, "flaggedPairs" | "byCategory">,
  perCategory: number
): ReviewListing => {
  const shown = categoryRecord((): Array<ReviewPair> => [])
  const wanted = (c: Category) => Math.min(perCategory, counts.byCategory[c] ?? 0)
  let needy = categories.some((c) => wanted(c) > 0)
  const take = (line: Buffer): void => {
    if (line.length === 0) return
    const pair = JSON.parse(line.toString("utf8")) as ReviewPair
    const list = shown[pair.category]
    if (list !== undefined && list.length < wanted(pair.category)) list.push(pair)
    needy = categories.some((c) => shown[c].length < wanted(c))
  }
  const out = fs.openSync(path.join(outDir, flaggedFile), "w")
  const buf = Buffer.alloc(1 << 22)
  let lines = 0
  try {
    for (const file of files) {
      if (!fs.existsSync(file)) throw new Error(`decontamination: ${file} is missing (the task that wrote it did not finish)`)
      const src = fs.openSync(file, "r")
      let rest: Buffer = Buffer.alloc(0)
      try {
        for (let n = fs.readSync(src, buf, 0, buf.length, null); n > 0; n = fs.readSync(src, buf, 0, buf.length, null)) {
          fs.writeSync(out, buf, 0, n)
          const chunk = buf.subarray(0, n)
          for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, nl + 1)) lines++
          if (!needy) continue
          // split on "\n" bytes (never inside a UTF-8 sequence); a line cut by the chunk waits in rest
          const text = rest.length === 0 ? chunk : Buffer.concat([rest, chunk])
          let start = 0
          for (let nl = text.indexOf(10); nl !== -1 && needy; start = nl + 1, nl = text.indexOf(10, start)) take(text.subarray(start, nl))
          rest = needy ? Buffer.from(text.subarray(start)) : Buffer.alloc(0)
        }
      } finally {
        fs.closeSync(src)
      }
    }
    fs.fsyncSync(out)
  } finally {
    fs.closeSync(out)
  }
  if (lines !== counts.flaggedPairs) {
    throw new Error(`decontamination: the tasks reported ${counts.flaggedPairs} flagged pairs but their pair files hold ${lines} lines`)
  }
  return { flaggedPairs: counts.flaggedPairs, byCategory: { ...noPairs(), ...counts.byCategory }, shown }
}
