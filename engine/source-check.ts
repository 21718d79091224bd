/**
 * What a source may be, checked at planning before anything hashes or reads it: a regular file or a
 * directory, never a FIFO, socket or device (reading one would block or never end), and of a shape the
 * reading step can take. A dataset directory must hold `data.jsonl` or `*.jsonl` / `*.jsonl.gz` /
 * `*.parquet` shards (or a `data/` folder of them);
 * a model, adapter or tokenizer is a directory. Anything else is a SourceError (exit 2), not a step
 * that fails after other steps ran.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { SourceError } from "./errors.ts"
import type { GraphNode, PlannedStep, SourceNode } from "./graph.ts"

const special = (st: fs.Stats | fs.Dirent): string | undefined =>
  st.isFIFO() ? "a FIFO" : st.isSocket() ? "a socket" : st.isCharacterDevice() ? "a character device"
    : st.isBlockDevice() ? "a block device" : undefined

const isShardName = (name: string): boolean => /\.(jsonl(\.gz)?|parquet)$/.test(name)

/** The first FIFO, socket or device below a directory, as [relative path, what it is]. */
const specialBelow = (dir: string): [string, string] | undefined => {
  const pending = [""]
  for (let rel = pending.pop(); rel !== undefined; rel = pending.pop()) {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`
      const what = special(e)
      if (what !== undefined) return [r, what]
      if (e.isDirectory()) pending.push(r)
    }
  }
  return undefined
}

const portOf = (step: PlannedStep, src: SourceNode): string =>
  Object.entries(step.inputs).find(([, n]) => (Array.isArray(n) ? (n as ReadonlyArray<GraphNode>).includes(src) : n === src))?.[0] ?? "?"

/** Throws a SourceError when `src` cannot be read as input of `step`; a missing path is left to hashing. */
export const checkSource = (step: PlannedStep, src: SourceNode): void => {
  const p = src.path
  const shown = path.relative(process.cwd(), p) || p
  const bad = (what: string) =>
    new SourceError({ message: `step "${step.id}" input "${portOf(step, src)}": source ${shown} ${what}`, path: p })
  let st: fs.Stats
  try {
    st = fs.statSync(p)
  } catch {
    return
  }
  const what = special(st)
  if (what !== undefined) throw bad(`is ${what}, not a regular file or a directory`)
  if (!st.isDirectory()) {
    if (src.kind === "model" || src.kind === "adapter" || src.kind === "tokenizer") {
      throw bad(`is a file, but a ${src.kind} source must be a directory (Hugging Face layout)`)
    }
    return
  }
  const inside = specialBelow(p)
  if (inside !== undefined) throw bad(`holds ${inside[0]}, which is ${inside[1]}: only regular files and directories can be hashed and read`)
  if (src.kind !== "dataset") return
  // the files a dataset reader will open (steps/data/jsonl.ts datasetFiles), links followed: data.jsonl,
  // else JSONL / Parquet shards, else those of a data/ folder (the Hugging Face layout)
  let names = fs.existsSync(path.join(p, "data.jsonl")) ? ["data.jsonl"] : fs.readdirSync(p).filter(isShardName)
  if (names.length === 0 && fs.existsSync(path.join(p, "data")) && fs.statSync(path.join(p, "data")).isDirectory()) {
    names = fs.readdirSync(path.join(p, "data")).filter(isShardName).map((n) => `data/${n}`)
  }
  if (names.length === 0) {
    throw bad("is a directory with no data.jsonl and no *.jsonl / *.jsonl.gz / *.parquet files (nor a data/ folder of them): a dataset source is a JSONL or Parquet file, a directory or a glob of them")
  }
  for (const name of names) {
    let file: fs.Stats
    try {
      file = fs.statSync(path.join(p, name))
    } catch (e) {
      throw bad(`holds ${name}, which cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
    if (!file.isFile()) throw bad(`holds ${name}, which is ${special(file) ?? "a directory"}: a dataset reads regular files`)
  }
}
