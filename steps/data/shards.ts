/**
 * Cutting a dataset into pieces that shard tasks read independently, and reading one piece.
 *
 * A piece is a byte range of an uncompressed JSONL file (cut at line starts, its first line number
 * known, so `file:line` in reports is the same whatever the cut), a whole gzipped JSONL file, or a run
 * of row groups of a Parquet shard. How many pieces there are is an execution choice (the `shards`
 * param, default from the data size): it never changes what a step writes, because every task's
 * results are merged in input order.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { DatasetError } from "./errors.ts"
import { datasetFiles, isGzip, isParquetFile, readFileLines, type Located, type RowReader } from "./jsonl.ts"
import { parquetShardInfo, readParquetRows, type ParquetShardInfo } from "./parquet.ts"

export type Piece =
  | { readonly kind: "lines"; readonly file: string; readonly start: number; readonly end: number; readonly firstLine: number }
  | { readonly kind: "gzip"; readonly file: string }
  | { readonly kind: "parquet"; readonly file: string; readonly rowStart: number; readonly rowEnd: number; readonly groups: ReadonlyArray<number> }

/** Default piece size when the `shards` param is not given: big enough that a task's start-up is noise. */
export const defaultPieceBytes = 64 << 20

/** Where a piece begins, for messages: "train-00003-of-00008.parquet" or "data.jsonl:1201". */
export const pieceName = (p: Piece): string =>
  p.kind === "lines" && p.start > 0 ? `${path.basename(p.file)}:${p.firstLine}`
    : p.kind === "parquet" && p.rowStart > 0 ? `${path.basename(p.file)} row ${p.rowStart + 1}`
    : path.basename(p.file)

/** Cuts [0, size) of a JSONL file into about `n` line-aligned ranges, counting lines as it goes. */
const cutLines = (file: string, size: number, n: number): Array<Piece> => {
  if (n <= 1 || size === 0) return [{ kind: "lines", file, start: 0, end: size, firstLine: 1 }]
  const out: Array<Piece> = []
  const fd = fs.openSync(file, "r")
  try {
    const buf = Buffer.alloc(1 << 22)
    let start = 0
    let firstLine = 1
    let line = 1 // the line at `pos`
    let pos = 0
    let target = Math.ceil(size / n)
    while (pos < size && out.length < n - 1) {
      const got = fs.readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos)
      if (got === 0) break
      let i = 0
      while (i < got) {
        const nl = buf.indexOf(10, i)
        if (nl === -1 || nl >= got) break
        line++
        i = nl + 1
        const after = pos + i
        if (after >= target && after < size && out.length < n - 1) {
          out.push({ kind: "lines", file, start, end: after, firstLine })
          start = after
          firstLine = line
          target = start + Math.ceil((size - start) / (n - out.length))
        }
      }
      pos += got
    }
    out.push({ kind: "lines", file, start, end: size, firstLine })
  } finally {
    fs.closeSync(fd)
  }
  return out
}

/**
 * The pieces of a dataset path, about `target` of them (at least one per file). Fails, naming the
 * shard, on a Parquet shard that cannot be read, on shards whose columns disagree, and on an empty
 * shard among several (a truncated or failed upload, almost always).
 */
export const planPieces = async (input: string, target: number | undefined): Promise<Array<Piece>> => {
  const files = datasetFiles(input)
  const sizes = files.map((f) => fs.statSync(f).size)
  const total = sizes.reduce((a, b) => a + b, 0)
  const wanted = target ?? Math.max(1, Math.ceil(total / defaultPieceBytes))
  const pieces: Array<Piece> = []
  let columns: { file: string; format: string; extra: ParquetShardInfo["extra"] } | undefined
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!
    const share = total === 0 ? 1 : Math.max(1, Math.round((wanted * sizes[i]!) / total))
    if (files.length > 1 && sizes[i] === 0) throw DatasetError.at(file, undefined, "shard is empty (0 bytes): a shard of a sharded dataset must hold rows")
    if (isParquetFile(file)) {
      const info = await parquetShardInfo(file)
      if (columns !== undefined && columns.format !== info.format) {
        throw DatasetError.at(file, undefined, `shard holds ${info.format} rows, but ${path.basename(columns.file)} holds ${columns.format} rows: every shard of a dataset has one schema`)
      }
      if (columns !== undefined && JSON.stringify(columns.extra) !== JSON.stringify(info.extra)) {
        const show = (x: ReadonlyArray<{ name: string; elements: ReadonlyArray<{ type?: string }> }>) => `{${x.map((c) => `${c.name}${c.elements.length === 1 ? ` ${c.elements[0]!.type}` : ""}`).join(", ")}}`
        throw DatasetError.at(file, undefined, `shard has extra columns ${show(info.extra)}, but ${path.basename(columns.file)} has ${show(columns.extra)}: every shard of a dataset has one schema`)
      }
      columns ??= { file, format: info.format, extra: info.extra }
      if (files.length > 1 && info.rows === 0) throw DatasetError.at(file, undefined, "shard is empty (0 rows): a shard of a sharded dataset must hold rows")
      const groups = info.groups.length - 1
      const m = Math.max(1, Math.min(share, groups))
      for (let j = 0; j < m; j++) {
        const g0 = Math.floor((j * groups) / m)
        const g1 = Math.floor(((j + 1) * groups) / m)
        pieces.push({ kind: "parquet", file, rowStart: info.groups[g0]!, rowEnd: info.groups[g1]!, groups: info.groups })
      }
    } else if (isGzip(file)) pieces.push({ kind: "gzip", file })
    else pieces.push(...cutLines(file, sizes[i]!, share))
  }
  return pieces
}

/** The rows of one piece, checked by `reader` (its schema and onInvalid); `index` counts from 0 in the piece. */
export async function* readPiece<T>(piece: Piece, reader: RowReader<T>): AsyncGenerator<Located<T>> {
  const file = piece.file
  let index = 0
  if (piece.kind === "parquet") {
    let line = piece.rowStart
    for await (const value of readParquetRows(file, piece.rowStart, piece.rowEnd, piece.groups)) {
      const row = reader.checkValue(file, ++line, value)
      if (row === undefined) continue
      reader.stats.rows++
      yield { row: row as T, file, line, index: index++ }
    }
    return
  }
  const range = piece.kind === "lines" ? piece : undefined
  for await (const { text, line, invalid } of readFileLines(file, range)) {
    const row = invalid !== undefined ? reader.invalid(file, line, "", invalid) : reader.checkLine(file, line, text)
    if (row === undefined) continue
    reader.stats.rows++
    yield { row: row as T, file, line, index: index++ }
  }
}
