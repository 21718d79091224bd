/**
 * `clean`: repairs text (NFKC, control characters, whitespace) and drops rows that are empty, too
 * short or too long (chars and words), match a drop pattern, or fail a Gopher quality rule. Rules are
 * checked in that order; the first that fails removes the row and is counted in the report. Runs as
 * shard tasks (map-fanout.ts) on the granted CPU slots.
 */
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, preservingRows, Port, type StepContext } from "../../engine/step.ts"
import { NonNegativeInt, OnInvalid, withDefault } from "./common.ts"
import { detectFormat, fieldText, joinFields, mapTexts, requiredFields, textFieldNames } from "./formats.ts"
import { FanoutParams, fanoutExecutionOnly, OutputParam, registerMapper, runMapStep } from "./map-fanout.ts"
import { GopherParams, gopherFailure } from "./quality.ts"
import { cleanText, words } from "./text.ts"
import { writeReport } from "./writer.ts"

const OptionalCount = Schema.optionalKey(NonNegativeInt)

export const CleanParams = Schema.Struct({
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "fields the length and quality rules measure (joined by newlines); default: every text field"
  }),
  nfkc: withDefault(Schema.Boolean, true).annotate({ description: "Unicode NFKC normalization" }),
  controlChars: withDefault(Schema.Boolean, true).annotate({
    description: "remove C0/C1 control characters (not tab, newline), zero-width space, word joiner, BOM; ZWJ/ZWNJ stay"
  }),
  whitespace: withDefault(Schema.Boolean, true).annotate({
    description: "CRLF to LF, runs of spaces and tabs to one space, lines and text trimmed, at most one blank line in a row"
  }),
  dropEmpty: withDefault(Schema.Boolean, true).annotate({
    description: "drop rows whose required fields are empty after cleaning (Platypus: missing instruction or output)"
  }),
  minChars: OptionalCount.annotate({ description: "drop rows with fewer characters in the measured fields" }),
  maxChars: OptionalCount.annotate({ description: "drop rows with more characters in the measured fields" }),
  minWords: OptionalCount.annotate({ description: "drop rows with fewer words in the measured fields" }),
  maxWords: OptionalCount.annotate({ description: "drop rows with more words in the measured fields" }),
  dropPatterns: withDefault(Schema.Array(Schema.String), []).annotate({
    description: "regular expressions (JavaScript syntax; a leading \"(?i)\" makes one case-insensitive)"
  }),
  gopher: Schema.optionalKey(GopherParams).annotate({
    description: "Gopher quality rules; `{}` turns them all on with datatrove's thresholds, `null` turns one off"
  }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "examples kept per rule in report.json" }),
  output: OutputParam,
  ...FanoutParams
})
export type CleanParams = typeof CleanParams.Type

/** Compiles drop patterns, failing with the param's index when one is not a valid regular expression. */
export const compilePatterns = (step: string, patterns: ReadonlyArray<string>): Array<RegExp> =>
  patterns.map((p, i) => {
    const insensitive = p.startsWith("(?i)")
    try {
      return new RegExp(insensitive ? p.slice(4) : p, insensitive ? "iu" : "u")
    } catch (e) {
      throw new Error(`step "${step}": param dropPatterns[${i}] is not a valid regular expression: ${(e as Error).message}`)
    }
  })

const inputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }

registerMapper("clean", async (spec) => {
  const p = spec.params as CleanParams
  const format = spec.format
  const patterns = compilePatterns("clean", p.dropPatterns)
  const measured = p.fields ?? textFieldNames[format]
  const textOpts = { nfkc: p.nfkc, controlChars: p.controlChars, whitespace: p.whitespace }
  let modified = 0
  return {
    map: (r) => {
      const raw = r.row
      const row = mapTexts(raw, format, (s) => cleanText(s, textOpts))
      if (JSON.stringify(row) !== JSON.stringify(raw)) modified++
      const rule = firstFailure(row, format, measured, p, patterns)
      return rule !== undefined ? { remove: { rule, text: joinFields(raw, measured) } } : { keep: row }
    },
    finish: () => ({ modified })
  }
})

export const runClean = async (ctx: StepContext<CleanParams, typeof inputs>): Promise<void> => {
  const p = ctx.params
  compilePatterns(ctx.step, p.dropPatterns)
  const format = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const m = await runMapStep(ctx, { mapper: "clean", input: ctx.inputs.data, format, params: p, output: p.output })
  const modified = m.extras.reduce((a, e) => a + (e.modified as number), 0)
  const total = m.rowsIn
  if (m.kept === 0) ctx.log(`clean removed every row of ${total}; see report.json`, "warn")
  writeReport(ctx.output, {
    step: "clean",
    format,
    input: total,
    kept: m.kept,
    removed: m.removed,
    modified,
    invalidSkipped: m.skipped,
    invalidExamples: m.invalidExamples,
    removedByRule: m.counts,
    examples: m.examples
  })
  ctx.metric("rows_in", total)
  ctx.metric("rows_out", m.kept)
  ctx.metric("removed", m.removed)
  ctx.metric("modified", modified)
  ctx.metric("invalid_skipped", m.skipped)
  for (const [rule, n] of Object.entries(m.counts)) ctx.metric(`removed.${rule}`, n)
}

const firstFailure = (
  row: Record<string, unknown>,
  format: keyof typeof requiredFields,
  measured: ReadonlyArray<string>,
  p: CleanParams,
  patterns: ReadonlyArray<RegExp>
): string | undefined => {
  if (p.dropEmpty) {
    for (const f of requiredFields[format]) {
      if (format === "messages" ? ((row.messages as Array<unknown>) ?? []).length === 0 : fieldText(row, f).length === 0) {
        return `empty.${f}`
      }
    }
  }
  const text = measured.map((f) => fieldText(row, f)).filter((t) => t.length > 0).join("\n")
  if (p.minChars !== undefined && text.length < p.minChars) return "minChars"
  if (p.maxChars !== undefined && text.length > p.maxChars) return "maxChars"
  if (p.minWords !== undefined || p.maxWords !== undefined) {
    const n = words(text).length
    if (p.minWords !== undefined && n < p.minWords) return "minWords"
    if (p.maxWords !== undefined && n > p.maxWords) return "maxWords"
  }
  for (let i = 0; i < patterns.length; i++) {
    if (patterns[i]!.test(text)) return `dropPatterns[${i}]`
  }
  if (p.gopher !== undefined) return gopherFailure(text, p.gopher)
  return undefined
}

export const clean = preservingRows(defineStep({
  kind: "clean",
  // 3: Gopher rules counted as datatrove counts them (stop words, symbols, lines); 4: symbol words are
  // datatrove's (`→`, `©`, emoji are words), words split on Python's whitespace
  version: 4,
  description: "NFKC/whitespace/control-character cleanup; drops empty, too short/long, pattern and Gopher-rule rows",
  params: CleanParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? 2 }),
  executionOnly: fanoutExecutionOnly,
  run: runClean
}))
