/**
 * What each row format means to data steps: which fields hold text, which text is the "question"
 * (the prompt side, used for dedup keys and decontamination) and which is the "answer" (used to keep
 * the longer answer and to compare with a benchmark's answer). The rules themselves (precedence, field
 * roles) are in row-formats.ts, the one definition the Python workers read too.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Message, Row } from "../../engine/rows.ts"
import { rowSchemas } from "../../engine/rows.ts"
import { DatasetError } from "./errors.ts"
import { datasetFiles, isParquetFile, readFileLines, type OnInvalid } from "./jsonl.ts"
import { parquetShardInfo } from "./parquet.ts"
import { fieldRoles, inferFormat, precedence, type ConcreteFormat } from "./row-formats.ts"

export { inferFormat, type ConcreteFormat }
export const concreteFormats = Object.keys(rowSchemas) as ReadonlyArray<ConcreteFormat>

type AnyRow = Record<string, unknown>

const byFormat = <A>(f: (format: ConcreteFormat) => A): Record<ConcreteFormat, A> =>
  Object.fromEntries(precedence.map((format) => [format, f(format)])) as Record<ConcreteFormat, A>

/**
 * A dataset's format: `dataset.json` when the path is an artifact, otherwise inferred from its first
 * row. Every later row is still checked against that format's schema when read. With
 * `onInvalid: "skip"`, lines that reading would skip (bad bytes, bad JSON, keys of no format) are skipped
 * here too, so detection is never stricter than reading.
 */
export const detectFormat = async (p: string, options: { readonly onInvalid?: OnInvalid } = {}): Promise<ConcreteFormat> => {
  const meta = path.join(p, "dataset.json")
  if (fs.existsSync(meta)) {
    const f = (JSON.parse(fs.readFileSync(meta, "utf8")) as { format?: string }).format
    if (f !== undefined && (concreteFormats as ReadonlyArray<string>).includes(f)) return f as ConcreteFormat
  }
  const skip = options.onInvalid === "skip"
  for (const file of datasetFiles(p)) {
    if (isParquetFile(file)) return (await parquetShardInfo(file)).format
    for await (const { text, line, invalid } of readFileLines(file)) {
      let problem = invalid
      let row: unknown
      if (problem === undefined) {
        try {
          row = JSON.parse(text)
        } catch (e) {
          problem = `malformed JSON (${(e as Error).message})`
        }
      }
      const f = typeof row === "object" && row !== null && !Array.isArray(row) ? inferFormat(row as AnyRow) : undefined
      if (f !== undefined) return f
      if (skip) continue
      throw DatasetError.at(
        file,
        line,
        problem ??
          `cannot tell the row format from keys {${Object.keys(row as object ?? {}).join(", ")}}: expected text, instruction/output, prompt/completion, messages or prompt/chosen/rejected`
      )
    }
  }
  throw DatasetError.at(p, undefined, skip ? "dataset is empty: no line is a row of a known format" : "dataset is empty: no rows")
}

/** The text fields of a format, as names (messages: every message's content). */
export const textFieldNames: Record<ConcreteFormat, ReadonlyArray<string>> = byFormat((f) => fieldRoles[f].text)

/** The fields whose text forms the question side (Platypus: instruction + input). */
export const questionFields: Record<ConcreteFormat, ReadonlyArray<string>> = byFormat((f) => fieldRoles[f].question)

const answerField: Record<ConcreteFormat, string> = byFormat((f) => fieldRoles[f].answer)

/**
 * The text of one field name: a plain string field, `messages` (all contents), or `messages:ROLE`
 * (the contents of that role's messages). A missing optional field is "".
 */
export const fieldText = (row: AnyRow, field: string): string => {
  if (field.startsWith("messages")) {
    const role = field.split(":")[1]
    const msgs = (row.messages ?? []) as ReadonlyArray<Message>
    return msgs.filter((m) => role === undefined || m.role === role).map((m) => m.content).join("\n")
  }
  const v = row[field]
  return typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v)
}

/** Several fields joined by a space, skipping empty ones (Platypus: `instruction + " " + input`). */
export const joinFields = (row: AnyRow, fields: ReadonlyArray<string>): string => {
  let out = ""
  for (const f of fields) {
    const t = fieldText(row, f)
    if (t.length === 0) continue
    out = out.length === 0 ? t : out + " " + t
  }
  return out
}

export const questionText = (row: AnyRow, format: ConcreteFormat): string => joinFields(row, questionFields[format])
export const answerText = (row: AnyRow, format: ConcreteFormat): string => fieldText(row, answerField[format])

/** All text of a row, fields separated by newlines (what length and quality rules measure). */
export const allText = (row: AnyRow, format: ConcreteFormat): string =>
  textFieldNames[format].map((f) => fieldText(row, f)).filter((t) => t.length > 0).join("\n")

/** Applies `f` to every text field of a row, returning a new row (other fields are kept as they are). */
export const mapTexts = (row: AnyRow, format: ConcreteFormat, f: (s: string) => string): AnyRow => {
  const out: AnyRow = { ...row }
  if (format === "messages") {
    out.messages = ((row.messages ?? []) as ReadonlyArray<Message>).map((m) => ({ ...m, content: f(m.content) }))
    return out
  }
  for (const name of textFieldNames[format]) {
    const v = row[name]
    if (typeof v === "string") out[name] = f(v)
  }
  return out
}

/** Fields a format requires to be non-empty (input of an Instruction row may be empty). */
export const requiredFields: Record<ConcreteFormat, ReadonlyArray<string>> = byFormat((f) => fieldRoles[f].nonEmpty)

export const schemaOf = (format: ConcreteFormat) => rowSchemas[format]

export type { Row }
