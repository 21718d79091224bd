/**
 * Writing a step's output dataset from rows that shard tasks wrote as JSON lines, in input order. The
 * layout is decided by params and the row count alone, never by how many tasks or workers there were:
 * - one `data.jsonl` (the default for JSONL), `dataset.json` = {format, rows}, as DatasetWriter writes;
 * - or shards in the Hugging Face layout, `data/train-00000-of-00008.parquet` (or `.jsonl`), rows cut
 *   into `shards` balanced runs (or runs of `rowsPerShard`), `dataset.json` listing them.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { ParquetShardWriter, type ExtraColumn } from "./parquet.ts"
import type { ConcreteFormat } from "./row-formats.ts"
import { LineBlocks } from "./writer.ts"

const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))

export const OutputLayout = Schema.Struct({
  as: Schema.optionalKey(Schema.Literals(["jsonl", "parquet"])).annotate({
    description: "file format of the output: jsonl or parquet; default: parquet when the input has Parquet shards, else jsonl"
  }),
  shards: Schema.optionalKey(PositiveInt).annotate({ description: "number of output shards (rows split evenly, in order)" }),
  rowsPerShard: Schema.optionalKey(PositiveInt).annotate({ description: "rows per output shard (the last holds the rest)" })
})
export type OutputLayout = typeof OutputLayout.Type

/** Rows per Parquet shard when neither `shards` nor `rowsPerShard` is given. */
export const defaultRowsPerShard = 500_000

export interface ResolvedLayout {
  readonly as: "jsonl" | "parquet"
  /** undefined: one data.jsonl */
  readonly shards: number | undefined
}

export const resolveLayout = (layout: OutputLayout | undefined, inputHasParquet: boolean, rows: number): ResolvedLayout => {
  const as = layout?.as ?? (inputHasParquet ? "parquet" : "jsonl")
  if (layout?.shards !== undefined) return { as, shards: layout.shards }
  if (layout?.rowsPerShard !== undefined) return { as, shards: Math.max(1, Math.ceil(rows / layout.rowsPerShard)) }
  if (as === "jsonl") return { as, shards: undefined }
  return { as, shards: Math.max(1, Math.ceil(rows / defaultRowsPerShard)) }
}

export const shardFileName = (i: number, n: number, ext: string): string =>
  `data/train-${String(i).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.${ext}`

/** The first row of each output shard and the end: shard i holds rows [cuts[i], cuts[i+1]). */
const cutsOf = (layout: OutputLayout | undefined, rows: number, n: number): Array<number> => {
  const per = layout?.rowsPerShard
  return Array.from({ length: n + 1 }, (_, i) => (per !== undefined ? Math.min(rows, i * per) : Math.floor((i * rows) / n)))
}

/** Lines of the part files, in order (a part file holds one JSON row per line, no blank lines). */
async function* partLines(parts: ReadonlyArray<string>): AsyncGenerator<string> {
  for (const file of parts) {
    let rest = ""
    for await (const chunk of fs.createReadStream(file, { encoding: "utf8", highWaterMark: 1 << 20 })) {
      const text = rest + (chunk as string)
      let start = 0
      for (let nl = text.indexOf("\n"); nl !== -1; start = nl + 1, nl = text.indexOf("\n", start)) yield text.slice(start, nl)
      rest = text.slice(start)
    }
    if (rest.length > 0) yield rest
  }
}

const appendFile = (fd: number, file: string, buf: Buffer): void => {
  const src = fs.openSync(file, "r")
  try {
    for (let n = fs.readSync(src, buf, 0, buf.length, null); n > 0; n = fs.readSync(src, buf, 0, buf.length, null)) {
      fs.writeSync(fd, buf, 0, n)
    }
  } finally {
    fs.closeSync(src)
  }
}

/**
 * Writes the output dataset into `dir` from part files holding `rows` rows in all (Parquet shards with
 * `extra` columns after the format's); returns the shard files written (relative to dir) and how many
 * rows had fields no Parquet column holds.
 */
export const writeOutput = async (
  dir: string,
  format: ConcreteFormat,
  layout: ResolvedLayout,
  cutsLayout: OutputLayout | undefined,
  parts: ReadonlyArray<string>,
  rows: number,
  extra: ReadonlyArray<ExtraColumn> = []
): Promise<{ readonly files: Array<string>; readonly extraFields: number }> => {
  fs.mkdirSync(dir, { recursive: true })
  if (layout.shards === undefined) {
    const fd = fs.openSync(path.join(dir, "data.jsonl"), "w")
    const buf = Buffer.alloc(1 << 22)
    try {
      for (const part of parts) appendFile(fd, part, buf)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.writeFileSync(path.join(dir, "dataset.json"), JSON.stringify({ format, rows }) + "\n")
    return { files: ["data.jsonl"], extraFields: 0 }
  }
  const n = layout.shards
  const cuts = cutsOf(cutsLayout, rows, n)
  const names = Array.from({ length: n }, (_, i) => shardFileName(i, n, layout.as))
  fs.mkdirSync(path.join(dir, "data"), { recursive: true })
  const lines = partLines(parts)[Symbol.asyncIterator]()
  let extraFields = 0
  for (let i = 0; i < n; i++) {
    const file = path.join(dir, names[i]!)
    const count = cuts[i + 1]! - cuts[i]!
    if (layout.as === "parquet") {
      const w = await ParquetShardWriter.open(file, format, extra)
      for (let r = 0; r < count; r++) w.write(JSON.parse((await lines.next()).value as string) as Record<string, unknown>)
      w.close()
      extraFields += w.extraFields
    } else {
      const fd = fs.openSync(file, "w")
      try {
        const out = new LineBlocks(fd)
        for (let r = 0; r < count; r++) out.push(((await lines.next()).value as string) + "\n")
        out.flush()
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
    }
  }
  fs.writeFileSync(path.join(dir, "dataset.json"), JSON.stringify({ format, rows, shards: names }) + "\n")
  return { files: names, extraFields }
}
