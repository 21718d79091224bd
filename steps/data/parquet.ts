/**
 * Parquet shards, read and written by row group so memory holds one group, never the file. Reading is
 * hyparquet, writing hyparquet-writer (pure JavaScript, no native build; why these: docs/data-steps.md).
 *
 * The columns of a shard are the fields of its row format (Hugging Face's layout: `messages` is a list
 * of {role, content} structs), then the rows' other fields (ids, urls, metadata): with the input
 * shard's own column types when the input was Parquet, else typed from the values (ExtraColumn).
 * Written bytes depend only on the rows: fixed codec (Snappy), fixed
 * row-group size, a fixed `created_by` and no timestamps, so an artifact's hash never depends on the
 * machine or the number of workers that wrote it.
 */
import * as fs from "node:fs"
import * as zlib from "node:zlib"
import type { AsyncBuffer, FileMetaData, SchemaElement } from "hyparquet"
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

/** The columns of each row format; a row's other fields are extra columns. */
export const columnsOf: Record<ConcreteFormat, ReadonlyArray<string>> = {
  text: ["text"],
  instruction: ["instruction", "input", "output"],
  "prompt-completion": ["prompt", "completion"],
  messages: ["messages"],
  preference: ["prompt", "chosen", "rejected"]
}

// ---------------------------------------------------------------------------------------------
// Extra columns: the fields of a row beyond its format's

/** The JSON kind of an extra field's values, as a map task sees them (merged over every task). */
export type ExtraKind = "int" | "float" | "string" | "bool" | "json"

export const kindOfValue = (v: unknown): ExtraKind | undefined =>
  v === null || v === undefined ? undefined
    : typeof v === "string" ? "string"
    : typeof v === "boolean" ? "bool"
    : typeof v === "number" ? (Number.isInteger(v) ? "int" : "float")
    : "json"

/** Two kinds seen in one field: an int column with a float becomes float, any other mix JSON. */
export const mergeKinds = (a: ExtraKind | undefined, b: ExtraKind): ExtraKind =>
  a === undefined || a === b ? b : (a === "int" && b === "float") || (a === "float" && b === "int") ? "float" : "json"

/** An output column beyond the row format's: its schema subtree, in Parquet's preorder. */
export interface ExtraColumn {
  readonly name: string
  readonly elements: ReadonlyArray<SchemaElement>
}

const elementOfKind = (name: string, kind: ExtraKind): SchemaElement => {
  const base = { name, repetition_type: "OPTIONAL" as const }
  switch (kind) {
    case "int":
      return { ...base, type: "INT64" }
    case "float":
      return { ...base, type: "DOUBLE" }
    case "bool":
      return { ...base, type: "BOOLEAN" }
    case "string":
      return { ...base, type: "BYTE_ARRAY", converted_type: "UTF8" }
    case "json":
      return { ...base, type: "BYTE_ARRAY", converted_type: "JSON" }
  }
}

/** A column typed from the values the map tasks saw: int64, double, boolean, string, else JSON text. */
export const inferredColumn = (name: string, kind: ExtraKind): ExtraColumn => ({ name, elements: [elementOfKind(name, kind)] })

/** Leaves this module reads into JSON values and writes back unchanged: plain numbers, booleans, strings, JSON. */
const roundTrips = (e: SchemaElement): boolean => {
  if (e.num_children !== undefined) {
    return e.converted_type === undefined || e.converted_type === "LIST" || e.logical_type?.type === "LIST"
  }
  const ct = e.converted_type
  const lt = e.logical_type?.type
  switch (e.type) {
    case "BOOLEAN":
    case "FLOAT":
    case "DOUBLE":
      return ct === undefined && lt === undefined
    case "INT32":
    case "INT64":
      return (ct === undefined || /^U?INT_/.test(ct)) && (lt === undefined || lt === "INTEGER")
    case "BYTE_ARRAY":
      return ct === "UTF8" || ct === "JSON" || lt === "STRING" || lt === "JSON"
    default:
      return false
  }
}

/** The top-level columns of a shard's schema, each with its subtree (preorder). */
const topColumns = (schema: ReadonlyArray<SchemaElement>): Array<ExtraColumn> => {
  const out: Array<ExtraColumn> = []
  let i = 1
  const skip = (at: number): number => {
    let next = at + 1
    for (let c = 0; c < (schema[at]!.num_children ?? 0); c++) next = skip(next)
    return next
  }
  for (let c = 0; c < (schema[0]!.num_children ?? 0); c++) {
    const end = skip(i)
    out.push({ name: schema[i]!.name, elements: schema.slice(i, end).map((e) => definedFields(e)) })
    i = end
  }
  return out
}

/** A schema element without the fields a reader fills in as undefined (so two can be compared as JSON). */
const definedFields = (e: SchemaElement): SchemaElement =>
  Object.fromEntries(Object.entries(e).filter(([k, v]) => v !== undefined && k !== "field_id")) as unknown as SchemaElement

/**
 * The extra columns of a Parquet input shard, as it types them; a column whose values this module
 * cannot write back as they were read (timestamps, decimals, binary, maps) becomes JSON text, and is
 * named in `asJson`. A top-level column is written OPTIONAL (a step may add rows without it).
 */
export const parquetExtraColumns = (
  info: ParquetShardInfo
): { readonly columns: Array<ExtraColumn>; readonly asJson: Array<string> } => {
  const known = columnsOf[info.format]
  const columns: Array<ExtraColumn> = []
  const asJson: Array<string> = []
  for (const c of info.extra) {
    if (known.includes(c.name)) continue
    if (c.elements.every(roundTrips)) columns.push({ name: c.name, elements: [{ ...c.elements[0]!, repetition_type: "OPTIONAL" }, ...c.elements.slice(1)] })
    else {
      columns.push(inferredColumn(c.name, "json"))
      asJson.push(c.name)
    }
  }
  return { columns, asJson }
}

/** A JSON value read from a column, as the writer takes it back: INT64 leaves as BigInt, nested alike. */
const writable = (v: unknown, elements: ReadonlyArray<SchemaElement>, at = 0): unknown => {
  if (v === null || v === undefined) return null
  const e = elements[at]!
  if (e.num_children === undefined) {
    if (e.type === "INT64" && (typeof v === "number" || typeof v === "string")) return BigInt(v)
    return v
  }
  const children: Array<number> = []
  let next = at + 1
  const skip = (i: number): number => {
    let n = i + 1
    for (let c = 0; c < (elements[i]!.num_children ?? 0); c++) n = skip(n)
    return n
  }
  for (let c = 0; c < e.num_children; c++) {
    children.push(next)
    next = skip(next)
  }
  if (e.converted_type === "LIST" || e.logical_type?.type === "LIST") {
    // LIST > repeated group > element
    const repeated = children[0]!
    const element = elements[repeated]!.num_children === undefined ? repeated : repeated + 1
    return Array.isArray(v) ? v.map((x) => writable(x, elements, element)) : v
  }
  if (typeof v !== "object") return v
  const o = v as Record<string, unknown>
  return Object.fromEntries(children.map((c) => [elements[c]!.name, writable(o[elements[c]!.name], elements, c)]))
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const schemaOf = (format: ConcreteFormat, extra: ReadonlyArray<ExtraColumn> = []): Array<any> => {
  const more = extra.flatMap((c) => c.elements)
  if (format === "messages") {
    return [
      { name: "root", num_children: 1 + extra.length },
      { name: "messages", repetition_type: "REQUIRED", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      { name: "element", repetition_type: "REQUIRED", num_children: 2 },
      str("role", true),
      str("content", true),
      ...more
    ]
  }
  const cols = columnsOf[format]
  return [{ name: "root", num_children: cols.length + extra.length }, ...cols.map((c) => str(c, !(format === "instruction" && c === "input"))), ...more]
}

/** Writes one Parquet shard of `format` rows and the given extra columns, a row group at a time. */
export class ParquetShardWriter {
  private readonly writer: ParquetWriter
  private pending: Array<Record<string, unknown>> = []
  rows = 0
  /** rows that carried fields outside every column (not written) */
  extraFields = 0

  private constructor(readonly file: string, readonly format: ConcreteFormat, readonly extra: ReadonlyArray<ExtraColumn>, writer: ParquetWriter) {
    this.writer = writer
  }

  static async open(file: string, format: ConcreteFormat, extra: ReadonlyArray<ExtraColumn> = []): Promise<ParquetShardWriter> {
    const { writer } = await parquetLibraries()
    return new ParquetShardWriter(
      file, format, extra, new writer.ParquetWriter({ writer: writer.fileWriter(file), schema: schemaOf(format, extra), codec: "SNAPPY", createdBy: "anneal" })
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
    const all = [...cols, ...this.extra.map((c) => c.name)]
    for (const r of rows) if (Object.keys(r).some((k) => !all.includes(k))) this.extraFields++
    const columnData: Array<{ name: string; data: Array<unknown> }> = cols.map((name) => ({
      name,
      data: rows.map((r) => (name === "messages" ? (r.messages as Array<{ role: string; content: string }>).map((m) => ({ role: m.role, content: m.content })) : (r[name] ?? null)))
    }))
    for (const c of this.extra) columnData.push({ name: c.name, data: rows.map((r) => writable(r[c.name], c.elements)) })
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
  /** the columns beyond the format's, with their schema subtrees */
  readonly extra: ReadonlyArray<ExtraColumn>
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
  const extra = topColumns(md.schema).filter((c) => !columnsOf[format].includes(c.name))
  return { rows: Number(md.num_rows), groups, format, extra }
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
