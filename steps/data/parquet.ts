/**
 * Parquet shards, read and written by row group so memory holds one group, never the file. Reading is
 * hyparquet, writing hyparquet-writer (pure JavaScript, no native build; why these: docs/data-steps.md).
 *
 * The columns of a shard are the fields of its row format (Hugging Face's layout: `messages` is a list
 * of {role, content} structs). Written bytes depend only on the rows: fixed codec (Snappy), fixed
 * row-group size, a fixed `created_by` and no timestamps, so an artifact's hash never depends on the
 * machine or the number of workers that wrote it.
 */
import * as fs from "node:fs"
import * as zlib from "node:zlib"
import type { AsyncBuffer, FileMetaData } from "hyparquet"
import type { ParquetWriter } from "hyparquet-writer"
import type { RowFormat } from "../../engine/rows.ts"
import { DatasetError } from "./errors.ts"
import { inferFormat, type ConcreteFormat } from "./row-formats.ts"

/** Rows per row group of written shards: a fixed number, so the bytes depend on the rows alone. */
export const rowGroupRows = 10_000

/**
 * The Parquet libraries (about 50 modules) load on first use, so that a command that never touches a
 * Parquet file (`anneal --help`, `plan` of a JSONL recipe) does not pay for them at start-up.
 */
const libraries = async () => {
  const [reader, writer, extra] = await Promise.all([import("hyparquet"), import("hyparquet-writer"), import("hyparquet-compressors")])
  return { reader, writer, compressors: compressorsOf(extra) }
}
let loading: ReturnType<typeof libraries> | undefined
const parquetLibraries = (): ReturnType<typeof libraries> => (loading ??= libraries())

const str = (name: string, required: boolean) => ({
  name,
  type: "BYTE_ARRAY" as const,
  converted_type: "UTF8" as const,
  repetition_type: required ? ("REQUIRED" as const) : ("OPTIONAL" as const)
})

const columnsOf: Record<ConcreteFormat, ReadonlyArray<string>> = {
  text: ["text"],
  instruction: ["instruction", "input", "output"],
  "prompt-completion": ["prompt", "completion"],
  messages: ["messages"],
  preference: ["prompt", "chosen", "rejected"]
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const schemaOf = (format: ConcreteFormat): Array<any> => {
  if (format === "messages") {
    return [
      { name: "root", num_children: 1 },
      { name: "messages", repetition_type: "REQUIRED", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", repetition_type: "REQUIRED", num_children: 2 },
      str("role", true),
      str("content", true)
    ]
  }
  const cols = columnsOf[format]
  return [{ name: "root", num_children: cols.length }, ...cols.map((c) => str(c, !(format === "instruction" && c === "input")))]
}

/** Writes one Parquet shard of `format` rows, a row group at a time; extra fields of a row are not kept. */
export class ParquetShardWriter {
  private readonly writer: ParquetWriter
  private pending: Array<Record<string, unknown>> = []
  rows = 0
  /** rows that carried fields outside the format's columns (not written) */
  extraFields = 0

  private constructor(readonly file: string, readonly format: ConcreteFormat, writer: ParquetWriter) {
    this.writer = writer
  }

  static async open(file: string, format: ConcreteFormat): Promise<ParquetShardWriter> {
    const { writer } = await parquetLibraries()
    return new ParquetShardWriter(
      file, format, new writer.ParquetWriter({ writer: writer.fileWriter(file), schema: schemaOf(format), codec: "SNAPPY", createdBy: "anneal" })
    )
  }

  write(row: Record<string, unknown>): void {
    this.pending.push(row)
    this.rows++
    if (this.pending.length >= rowGroupRows) this.flush()
  }

  private flush(): void {
    if (this.pending.length === 0) return
    const rows = this.pending
    this.pending = []
    const cols = columnsOf[this.format]
    for (const r of rows) if (Object.keys(r).some((k) => !cols.includes(k))) this.extraFields++
    const columnData = cols.map((name) => ({
      name,
      data: rows.map((r) => (name === "messages" ? (r.messages as Array<{ role: string; content: string }>).map((m) => ({ role: m.role, content: m.content })) : (r[name] ?? null)))
    }))
    this.writer.write({ columnData, rowGroupSize: rows.length })
  }

  close(): number {
    this.flush()
    this.writer.finish()
    return this.rows
  }
}

/**
 * Decompressors beyond hyparquet's built-in Snappy: GZIP and BROTLI from Node's zlib, ZSTD from zlib
 * where the Node has it (22.15+, 24) else fzstd, LZ4 from hyparquet-compressors (pyarrow and Hugging
 * Face write all of them).
 */
const asBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
const zstd = (zlib as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync
const compressorsOf = (extra: typeof import("hyparquet-compressors")) => ({
  GZIP: (input: Uint8Array) => asBytes(zlib.gunzipSync(input)),
  BROTLI: (input: Uint8Array) => asBytes(zlib.brotliDecompressSync(input)),
  ZSTD: zstd === undefined ? (input: Uint8Array) => extra.decompressZstd(input) : (input: Uint8Array) => asBytes(zstd(input)),
  LZ4: extra.decompressLz4,
  LZ4_RAW: extra.decompressLz4Raw
})

export interface ParquetShardInfo {
  readonly rows: number
  /** the first row of each row group, and the end: groups[i]..groups[i+1] */
  readonly groups: ReadonlyArray<number>
  readonly format: ConcreteFormat
}

const metadataOf = async (file: string): Promise<{ md: FileMetaData; buf: AsyncBuffer }> => {
  const { reader } = await parquetLibraries()
  let buf: AsyncBuffer
  try {
    buf = await reader.asyncBufferFromFile(file)
  } catch (e) {
    throw DatasetError.at(file, undefined, `cannot open the Parquet shard: ${(e as Error).message}`, undefined, e)
  }
  try {
    return { md: await reader.parquetMetadataAsync(buf), buf }
  } catch (e) {
    throw DatasetError.at(file, undefined, `not a readable Parquet file (${(e as Error).message})`, undefined, e)
  }
}

/** Row count, row groups and row format of a Parquet shard, from its footer; a corrupt file fails here. */
export const parquetShardInfo = async (file: string): Promise<ParquetShardInfo> => {
  const { md } = await metadataOf(file)
  const { reader } = await parquetLibraries()
  const columns = reader.parquetSchema(md).children.map((c) => c.element.name)
  const probe = Object.fromEntries(columns.map((c) => [c, c === "messages" ? [] : ""]))
  const format = inferFormat(probe)
  if (format === undefined) {
    throw DatasetError.at(file, undefined, `cannot tell the row format from columns {${columns.join(", ")}}: expected text, instruction/output, prompt/completion, messages or prompt/chosen/rejected`)
  }
  const groups = [0]
  for (const g of md.row_groups) groups.push(groups[groups.length - 1]! + Number(g.num_rows))
  return { rows: Number(md.num_rows), groups, format }
}

/**
 * Rows [rowStart, rowEnd) of a Parquet shard, a row group at a time. Null optional columns are left
 * out of the row (as a JSONL row would not have the key).
 */
export async function* readParquetRows(file: string, rowStart: number, rowEnd: number, groups: ReadonlyArray<number>): AsyncGenerator<Record<string, unknown>> {
  const { md, buf } = await metadataOf(file)
  const { reader, compressors } = await parquetLibraries()
  for (let g = 0; g + 1 < groups.length; g++) {
    const start = Math.max(groups[g]!, rowStart)
    const end = Math.min(groups[g + 1]!, rowEnd)
    if (start >= end) continue
    let rows: Array<Record<string, unknown>>
    try {
      rows = await reader.parquetReadObjects({ file: buf, metadata: md, rowStart: start, rowEnd: end, compressors })
    } catch (e) {
      throw DatasetError.at(file, start + 1, `cannot decode row group ${g} of the Parquet shard (${(e as Error).message})`, undefined, e)
    }
    for (const r of rows) {
      for (const k of Object.keys(r)) {
        const v = r[k]
        if (v === null || v === undefined) delete r[k]
        else if (typeof v === "bigint" || typeof v === "object") r[k] = jsonValue(v)
      }
      yield r
    }
  }
}

/**
 * A Parquet value as JSON can hold it: INT64 (a BigInt) as a number when it is exact, else a string;
 * nested lists and structs likewise (extra columns such as an `id` pass through as JSONL rows carry them).
 */
const jsonValue = (v: unknown): unknown => {
  if (typeof v === "bigint") return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()
  if (Array.isArray(v)) return v.map(jsonValue)
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) out[k] = jsonValue(x)
    return out
  }
  return v
}

/** True when a file starts with Parquet's magic bytes (used to name a mislabelled shard). */
export const looksLikeParquet = (file: string): boolean => {
  const fd = fs.openSync(file, "r")
  try {
    const b = Buffer.alloc(4)
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.toString("latin1") === "PAR1"
  } finally {
    fs.closeSync(fd)
  }
}

export type { RowFormat }
