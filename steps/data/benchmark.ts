/**
 * Reading benchmark items for decontamination: which fields hold the question, the choices and the
 * answer is configurable (dotted paths, e.g. "choices.text" for ARC). A multiple-choice answer given
 * as an index or a letter resolves to the choice's text; ARC's {label, text} choices resolve by label.
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { withDefault } from "./common.ts"
import { DatasetError } from "./errors.ts"
import { readJsonl } from "./jsonl.ts"

export const BenchmarkFields = Schema.Struct({
  question: withDefault(Schema.String, "question"),
  choices: Schema.optionalKey(Schema.String),
  answer: Schema.optionalKey(Schema.String)
})
export type BenchmarkFields = typeof BenchmarkFields.Type

export interface BenchmarkItem {
  readonly benchmark: string
  readonly at: string
  readonly question: string
  readonly choices: ReadonlyArray<string>
  readonly answer: string | undefined
}

const get = (obj: unknown, dotted: string): unknown => {
  let cur = obj
  for (const part of dotted.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}

/** A benchmark's display name: its file name, or its directory's for an artifact's data.jsonl. */
export const benchmarkName = (p: string): string => {
  const base = path.basename(p).replace(/\.jsonl(\.gz)?$/, "")
  return base === "" ? p : base
}

export const readBenchmark = async (p: string, f: BenchmarkFields): Promise<Array<BenchmarkItem>> => {
  const name = benchmarkName(p)
  const items: Array<BenchmarkItem> = []
  for await (const r of readJsonl(p).located()) {
    const at = `${path.basename(r.file)}:${r.line}`
    const fail = (field: string, what: string) => DatasetError.at(r.file, r.line, what, field)
    const q = get(r.row, f.question)
    if (typeof q !== "string") {
      throw fail(f.question, q === undefined ? "missing (set the question param to the field holding the question)" : "expected a string")
    }
    let choices: Array<string> = []
    let labels: Array<string> | undefined
    if (f.choices !== undefined) {
      let c = get(r.row, f.choices)
      if (typeof c === "object" && c !== null && !Array.isArray(c) && Array.isArray((c as { text?: unknown }).text)) {
        labels = (c as { label?: Array<string> }).label
        c = (c as { text: unknown }).text
      }
      if (!Array.isArray(c) || !c.every((x) => typeof x === "string")) throw fail(f.choices, "expected an array of strings")
      choices = c as Array<string>
    }
    let answer: string | undefined
    if (f.answer !== undefined) {
      const a = get(r.row, f.answer)
      if (a === undefined || a === null) throw fail(f.answer, "missing")
      answer = resolveAnswer(a, choices, labels)
      if (answer === undefined) throw fail(f.answer, `cannot resolve ${JSON.stringify(a)} against ${choices.length} choices`)
    }
    items.push({ benchmark: name, at, question: q, choices, answer })
  }
  return items
}

const resolveAnswer = (a: unknown, choices: ReadonlyArray<string>, labels: ReadonlyArray<string> | undefined): string | undefined => {
  if (choices.length === 0) return typeof a === "string" || typeof a === "number" ? String(a) : undefined
  if (typeof a === "number") return Number.isInteger(a) ? choices[a] : undefined
  if (typeof a !== "string") return undefined
  if (labels !== undefined && labels.includes(a)) return choices[labels.indexOf(a)]
  if (/^[A-Z]$/.test(a)) return choices[a.charCodeAt(0) - 65]
  if (/^\d+$/.test(a)) return choices[Number(a)]
  return a
}
