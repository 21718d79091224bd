/**
 * Writing a dataset artifact: `data.jsonl` (one row per line) and `dataset.json` ({format, rows}).
 * Lines are buffered and written synchronously in large blocks: simple, and as fast as a stream for
 * the row sizes datasets have.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { RowFormat } from "../../engine/rows.ts"

const flushAt = 1 << 20

/**
 * Lines written to an open file in blocks of about 1 MiB: memory holds one block whatever the row
 * size (a count of lines would hold 4096 rows of a 100 KB document, 400 MB, and copies of it).
 */
export class LineBlocks {
  private buffer: Array<string> = []
  private buffered = 0

  constructor(private readonly fd: number) {}

  push(line: string): void {
    this.buffer.push(line)
    this.buffered += line.length
    if (this.buffered >= flushAt || this.buffer.length >= 8192) this.flush()
  }

  flush(): void {
    if (this.buffer.length === 0) return
    fs.writeSync(this.fd, this.buffer.join(""))
    this.buffer = []
    this.buffered = 0
  }
}

export class DatasetWriter {
  private readonly fd: number
  private buffer: Array<string> = []
  private buffered = 0
  private closed = false
  rows = 0

  constructor(readonly dir: string, readonly format: RowFormat) {
    fs.mkdirSync(dir, { recursive: true })
    this.fd = fs.openSync(path.join(dir, "data.jsonl"), "w")
  }

  write(row: object): void {
    const line = JSON.stringify(row) + "\n"
    this.buffer.push(line)
    this.buffered += line.length
    this.rows++
    if (this.buffered >= flushAt) this.flush()
  }

  private flush(): void {
    if (this.buffer.length === 0) return
    fs.writeSync(this.fd, this.buffer.join(""))
    this.buffer = []
    this.buffered = 0
  }

  /** Flushes, writes dataset.json, and returns the row count. */
  close(): number {
    if (this.closed) return this.rows
    this.closed = true
    this.flush()
    fs.fsyncSync(this.fd)
    fs.closeSync(this.fd)
    fs.writeFileSync(path.join(this.dir, "dataset.json"), JSON.stringify({ format: this.format, rows: this.rows }) + "\n")
    return this.rows
  }
}

/** Writes a whole dataset artifact from rows (sync or async iterable); returns the row count. */
export const writeDataset = async (
  dir: string,
  format: RowFormat,
  rows: Iterable<object> | AsyncIterable<object>
): Promise<number> => {
  const w = new DatasetWriter(dir, format)
  for await (const r of rows) w.write(r)
  return w.close()
}

/** Writes `report.json` into a step's output directory (beside data.jsonl). */
export const writeReport = (dir: string, report: object): void => {
  fs.writeFileSync(path.join(dir, "report.json"), JSON.stringify(report, null, 2) + "\n")
}
