/**
 * What each row format means to data steps: which fields hold text, which text is the "question"
 * (the prompt side, used for dedup keys and decontamination) and which is the "answer" (used to keep
 * the longer answer and to compare with a benchmark's answer).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Message, Row, RowFormat } from "../../engine/rows.ts"
import { rowSchemas } from "../../engine/rows.ts"
import { DatasetError } from "./errors.ts"
import { datasetFiles, readFileLines } from "./jsonl.ts"

export type ConcreteFormat = Exclude<RowFormat, "any">
export const concreteFormats = Object.keys(rowSchemas) as ReadonlyArray<ConcreteFormat>

type AnyRow = Record<string, unknown>

/** The format a row's keys imply, or undefined when none fits. */
export const inferFormat = (row: AnyRow): ConcreteFormat | undefined => {
  if ("messages" in row) return "messages"
  if ("chosen" in row && "rejected" in row) return "preference"
  if ("instruction" in row && "output" in row) return "instruction"
  if ("prompt" in row && "completion" in row) return "prompt-completion"
  if ("text" in row) return "text"
  return undefined
}

/**
 * A dataset's format: `dataset.json` when the path is an artifact, otherwise inferred from its first
 * row. Every later row is still checked against that format's schema when read.
 */
export const detectFormat = async (p: string): Promise<ConcreteFormat> => {
  const meta = path.join(p, "dataset.json")
  if (fs.existsSync(meta)) {
    const f = (JSON.parse(fs.readFileSync(meta, "utf8")) as { format?: string }).format
    if (f !== undefined && (concreteFormats as ReadonlyArray<string>).includes(f)) return f as ConcreteFormat
  }
  for (const file of datasetFiles(p)) {
    for await (const { text, line } of readFileLines(file)) {
      let row: unknown
      try {
        row = JSON.parse(text)
      } catch (e) {
        throw DatasetError.at(file, line, `malformed JSON (${(e as Error).message})`, undefined, e)
      }
      const f = typeof row === "object" && row !== null ? inferFormat(row as AnyRow) : undefined
      if (f === undefined) {
        throw DatasetError.at(
          file,
          line,
          `cannot tell the row format from keys {${Object.keys(row as object).join(", ")}}: expected text, instruction/output, prompt/completion, messages or prompt/chosen/rejected`
        )
      }
      return f
    }
  }
  throw DatasetError.at(p, undefined, "dataset is empty: no rows")
}

/** The text fields of a format, as names (messages: every message's content). */
export const textFieldNames: Record<ConcreteFormat, ReadonlyArray<string>> = {
  text: ["text"],
  instruction: ["instruction", "input", "output"],
  "prompt-completion": ["prompt", "completion"],
  messages: ["messages"],
  preference: ["prompt", "chosen", "rejected"]
}

/** The fields whose text forms the question side (Platypus: instruction + input). */
export const questionFields: Record<ConcreteFormat, ReadonlyArray<string>> = {
  text: ["text"],
  instruction: ["instruction", "input"],
  "prompt-completion": ["prompt"],
  messages: ["messages:user"],
  preference: ["prompt"]
}

const answerField: Record<ConcreteFormat, string> = {
  text: "text",
  instruction: "output",
  "prompt-completion": "completion",
  messages: "messages:assistant",
  preference: "chosen"
}

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
export const requiredFields: Record<ConcreteFormat, ReadonlyArray<string>> = {
  text: ["text"],
  instruction: ["instruction", "output"],
  "prompt-completion": ["prompt", "completion"],
  messages: ["messages"],
  preference: ["prompt", "chosen", "rejected"]
}

export const schemaOf = (format: ConcreteFormat) => rowSchemas[format]

export type { Row }
