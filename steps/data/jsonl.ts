/**
 * Streaming dataset input: a dataset artifact directory (`data.jsonl`, or shards), a single `.jsonl` /
 * `.jsonl.gz` / `.parquet` file, a directory or a glob of them (read in name order; Parquet: parquet.ts). Lines are read chunk by chunk, so memory does not
 * grow with the file. Rows are checked against a row schema; a bad line is an error naming file:line
 * and the field, or, with `onInvalid: "skip"`, is counted and kept as an example for the step's report.
 *
 * ```ts
 * const rows = readRows(ctx.inputs.data, Instruction, { onInvalid: "skip" })
 * for await (const row of rows) { ... }
 * rows.stats.skipped  // lines that failed the schema
 * ```
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { isUtf8 } from "node:buffer"
import * as Schema from "effect/Schema"
import { DatasetError, describeSchemaIssue } from "./errors.ts"
import { parquetShardInfo, readParquetRows } from "./parquet.ts"

export type OnInvalid = "error" | "skip"

/** One line that failed to parse or to match the row schema. */
export interface InvalidRow {
  readonly file: string
  readonly line: number
  readonly field: string
  readonly reason: string
}

export interface ReadStats {
  /** rows yielded */
  rows: number
  /** lines skipped with onInvalid: "skip" */
  skipped: number
  /** the first few skipped lines, for the report */
  readonly examples: Array<InvalidRow>
}

export interface ReadOptions {
  readonly onInvalid?: OnInvalid
  /** an empty dataset is an error unless this is set (an empty training set is almost always a mistake) */
  readonly allowEmpty?: boolean
  /** how many skipped lines to keep as examples (default 20) */
  readonly maxExamples?: number
}

/** A row with where it came from; `index` counts valid rows from 0 across all files. */
export interface Located<T> {
  readonly row: T
  readonly file: string
  readonly line: number
  readonly index: number
}

const isShardName = (name: string): boolean => /\.(jsonl(\.gz)?|parquet)$/.test(name)
const isGlob = (p: string): boolean => /[*?[]/.test(path.basename(p))

/**
 * The files a dataset path stands for, in reading order: a file; a directory's `data.jsonl`, else its
 * `*.jsonl`, `*.jsonl.gz` and `*.parquet` shards, else those of its `data/` folder (the Hugging Face
 * layout, `data/train-00000-of-00064.parquet`); or a glob of shards (`shards/*.parquet`), in name order.
 */
export const datasetFiles = (p: string): Array<string> => {
  let st: fs.Stats
  try {
    st = fs.statSync(p)
  } catch (e) {
    if (isGlob(p)) {
      const files = globShards(p)
      if (files.length === 0) throw DatasetError.at(p, undefined, "the glob matches no *.jsonl, *.jsonl.gz or *.parquet file")
      return files
    }
    throw DatasetError.at(p, undefined, "dataset not found (no such file or directory)", undefined, e)
  }
  if (st.isFile()) return [p]
  if (!st.isDirectory()) throw DatasetError.at(p, undefined, "not a regular file or a directory (a FIFO or device is never read)")
  const main = path.join(p, "data.jsonl")
  if (fs.existsSync(main)) return [main]
  const listed = listedShards(p)
  if (listed !== undefined) return listed
  const shardsIn = (dir: string) => fs.readdirSync(dir).filter(isShardName).sort().map((n) => path.join(dir, n))
  let files = shardsIn(p)
  const data = path.join(p, "data")
  if (files.length === 0 && fs.existsSync(data) && fs.statSync(data).isDirectory()) files = shardsIn(data)
  if (files.length === 0) {
    throw DatasetError.at(p, undefined, "directory holds no data.jsonl and no *.jsonl / *.jsonl.gz / *.parquet files (nor a data/ folder of them)")
  }
  return files
}

/** The shards a dataset artifact's `dataset.json` lists (a sharded artifact), or undefined. */
const listedShards = (dir: string): Array<string> | undefined => {
  let meta: { shards?: unknown }
  try {
    meta = JSON.parse(fs.readFileSync(path.join(dir, "dataset.json"), "utf8")) as { shards?: unknown }
  } catch {
    return undefined
  }
  if (!Array.isArray(meta.shards)) return undefined
  return meta.shards.filter((s): s is string => typeof s === "string" && !s.includes("..")).map((s) => path.join(dir, s))
}

/** The shards a glob names; wildcards (`*`, `?`, `[...]`) in the last path component only. */
const globShards = (p: string): Array<string> => {
  const dir = path.dirname(p)
  const re = new RegExp("^" + path.basename(p).replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$")
  let names: Array<string>
  try {
    names = fs.readdirSync(dir)
  } catch (e) {
    throw DatasetError.at(p, undefined, "the glob's directory cannot be read", undefined, e)
  }
  return names.filter((n) => re.test(n) && isShardName(n)).sort().map((n) => path.join(dir, n)).filter((f) => fs.statSync(f).isFile())
}

export const isParquetFile = (file: string): boolean => file.endsWith(".parquet")

export const isGzip = (file: string): boolean => {
  if (file.endsWith(".gz")) return true
  const fd = fs.openSync(file, "r")
  try {
    const head = Buffer.alloc(2)
    const n = fs.readSync(fd, head, 0, 2, 0)
    return n === 2 && head[0] === 0x1f && head[1] === 0x8b
  } finally {
    fs.closeSync(fd)
  }
}

/** Bytes [start, end) of an uncompressed file, cut at line starts; `firstLine` is the line at `start`. */
export interface ByteRange {
  readonly start: number
  readonly end: number
  readonly firstLine: number
}

/** One non-blank line; `invalid` says why its bytes are not text (the line is then an invalid row). */
export interface FileLine {
  readonly text: string
  readonly line: number
  readonly invalid?: string | undefined
}

/** The offset of the first byte that does not start a valid UTF-8 sequence (only called on bad lines). */
const firstInvalidByte = (b: Buffer): number => {
  for (let i = 0; i < b.length;) {
    const c = b[i]!
    const n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 : c >= 0xf0 && c < 0xf5 ? 4 : 0
    if (n === 0 || i + n > b.length || !isUtf8(b.subarray(i, i + n))) return i
    i += n
  }
  return -1
}

/** Decodes one line strictly: invalid UTF-8 is reported, never turned into U+FFFD. */
const decodeLine = (bytes: Buffer, line: number): FileLine | undefined => {
  if (!isUtf8(bytes)) return { text: "", line, invalid: `invalid UTF-8 at byte ${firstInvalidByte(bytes)} of the line` }
  const text = bytes.toString("utf8")
  return text.trim().length > 0 ? { text, line } : undefined
}

/**
 * The lines of a block of whole lines (it ends with a newline), numbered from `first`; returns the next
 * line number. A block that is valid UTF-8 (the usual case) is decoded at once; otherwise line by line,
 * so a bad byte spoils one line.
 */
function* blockLines(block: Buffer, first: number): Generator<FileLine, number> {
  let line = first
  if (isUtf8(block)) {
    const text = block.toString("utf8")
    for (let start = 0, nl = text.indexOf("\n"); nl !== -1; start = nl + 1, nl = text.indexOf("\n", start)) {
      const s = text.slice(start, nl)
      if (s.trim().length > 0) yield { text: s, line }
      line++
    }
    return line
  }
  for (let start = 0, nl = block.indexOf(10); nl !== -1; start = nl + 1, nl = block.indexOf(10, start)) {
    const l = decodeLine(block.subarray(start, nl), line++)
    if (l !== undefined) yield l
  }
  return line
}

const hasBom = (b: Buffer): boolean => b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf

/**
 * Non-blank lines of one file, with 1-based line numbers. Each line must be valid UTF-8 on its own (a
 * line with a bad byte is reported as invalid, never decoded to U+FFFD); a BOM opening the file is dropped.
 */
export async function* readFileLines(file: string, range?: ByteRange): AsyncGenerator<FileLine> {
  if (range !== undefined && range.end <= range.start) return
  let stream: NodeJS.ReadableStream = fs.createReadStream(file, {
    highWaterMark: 1 << 20,
    ...(range === undefined ? {} : { start: range.start, end: range.end - 1 })
  })
  if (range === undefined && isGzip(file)) stream = stream.pipe(zlib.createGunzip())
  let pending: Array<Buffer> = [] // the start of a line that spans chunks
  let line = range?.firstLine ?? 1
  let atStart = range === undefined || range.start === 0
  const take = (block: Buffer): Buffer => {
    const first = atStart
    atStart = false
    return first && hasBom(block) ? block.subarray(3) : block
  }
  try {
    for await (const data of stream) {
      const chunk = data as Buffer
      const last = chunk.lastIndexOf(10)
      if (last === -1) {
        pending.push(Buffer.from(chunk))
        continue
      }
      const whole = pending.length === 0 ? chunk.subarray(0, last + 1) : Buffer.concat([...pending, chunk.subarray(0, last + 1)])
      pending = last + 1 < chunk.length ? [Buffer.from(chunk.subarray(last + 1))] : []
      line = yield* blockLines(take(whole), line)
    }
  } catch (e) {
    if (e instanceof DatasetError) throw e
    throw DatasetError.at(file, line, `cannot read: ${(e as Error).message}`, undefined, e)
  }
  if (pending.length > 0) {
    const l = decodeLine(take(Buffer.concat(pending)), line)
    if (l !== undefined) yield l
  }
}

/**
 * Parsed JSON objects of a dataset path, without a schema (benchmarks, custom shapes). A line that is
 * not a JSON object is an error (or a skip, counted in `stats`).
 */
export const readJsonl = (p: string, options: ReadOptions = {}): RowReader<Record<string, unknown>> =>
  new RowReader(p, undefined, options)

/** Rows of a dataset path checked against `schema` (see the module doc). Extra fields pass through. */
export const readRows = <S extends Schema.Top>(p: string, schema: S | undefined, options: ReadOptions = {}): RowReader<
  S["Type"]
> => new RowReader(p, schema, options)

export class RowReader<T> implements AsyncIterable<T> {
  readonly stats: ReadStats = { rows: 0, skipped: 0, examples: [] }
  private readonly is: ((u: unknown) => boolean) | undefined
  private readonly decode: ((u: unknown) => unknown) | undefined

  constructor(readonly path: string, schema: Schema.Top | undefined, readonly options: ReadOptions) {
    this.is = schema === undefined ? undefined : Schema.is(schema as Schema.Codec<unknown>)
    this.decode = schema === undefined ? undefined : Schema.decodeUnknownSync(schema as Schema.Codec<unknown>)
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for await (const r of this.located()) yield r.row
  }

  /** Rows with their file, line and index. */
  async *located(): AsyncGenerator<Located<T>> {
    const files = datasetFiles(this.path)
    for (const file of files) {
      if (isParquetFile(file)) {
        const info = await parquetShardInfo(file)
        let line = 0
        for await (const value of readParquetRows(file, 0, info.rows, info.groups)) {
          const row = this.checkValue(file, ++line, value)
          if (row === undefined) continue
          yield { row: row as T, file, line, index: this.stats.rows++ }
        }
        continue
      }
      for await (const { text, line, invalid } of readFileLines(file)) {
        const row = invalid !== undefined ? this.invalid(file, line, "", invalid) : this.checkLine(file, line, text)
        if (row === undefined) continue
        yield { row: row as T, file, line, index: this.stats.rows++ }
      }
    }
    if (this.stats.rows === 0 && this.options.allowEmpty !== true) {
      const skipped = this.stats.skipped > 0 ? ` (all ${this.stats.skipped} lines were invalid and skipped)` : ""
      throw DatasetError.at(this.path, undefined, `dataset is empty: no rows${skipped}`)
    }
  }

  /** Collects every row into memory; only for small inputs such as benchmark samples. */
  async toArray(): Promise<Array<T>> {
    const out: Array<T> = []
    for await (const r of this) out.push(r)
    return out
  }

  checkLine(file: string, line: number, text: string): unknown {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (e) {
      return this.invalid(file, line, "", `malformed JSON (${(e as Error).message})`, e)
    }
    return this.checkValue(file, line, value)
  }

  /** Checks one parsed row (a JSONL line's value, or a Parquet row) against the row schema. */
  checkValue(file: string, line: number, value: unknown): unknown {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return this.invalid(file, line, "", "expected a JSON object per line")
    }
    if (this.is !== undefined && !this.is(value)) {
      try {
        this.decode!(value)
      } catch (e) {
        const { field, reason } = describeSchemaIssue(e)
        return this.invalid(file, line, field, reason, e)
      }
    }
    return value
  }

  invalid(file: string, line: number, field: string, reason: string, cause?: unknown): undefined {
    if (this.options.onInvalid !== "skip") throw DatasetError.at(file, line, reason, field, cause)
    this.stats.skipped++
    if (this.stats.examples.length < (this.options.maxExamples ?? 20)) this.stats.examples.push({ file, line, field, reason })
    return undefined
  }
}
