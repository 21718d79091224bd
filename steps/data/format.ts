/**
 * `format`: converts a dataset between row formats (see convert.ts for what converts to what). The
 * whole conversion is refused before reading when the pair of formats is not defined; a row that
 * cannot convert (a multi-turn conversation to prompt-completion) is an error naming file:line, or,
 * with onInvalid: "skip", is counted in the report.
 */
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, Port, type StepContext } from "../../engine/step.ts"
import { locationOf, NonNegativeInt, OnInvalid, RemovalLog, withDefault } from "./common.ts"
import { convertRow, unsupported } from "./convert.ts"
import { DatasetError } from "./errors.ts"
import { concreteFormats, detectFormat, schemaOf, type ConcreteFormat } from "./formats.ts"
import { readRows } from "./jsonl.ts"
import { DatasetWriter, writeReport } from "./writer.ts"

export const FormatParams = Schema.Struct({
  to: Schema.Literals(concreteFormats as ReadonlyArray<ConcreteFormat>).annotate({ description: "the row format to convert to" }),
  template: withDefault(Schema.Literals(["plain", "alpaca"]), "plain").annotate({
    description: "how an instruction row becomes a prompt: \"alpaca\" (Platypus' template) or \"plain\" (instruction, blank line, input)"
  }),
  system: Schema.optionalKey(Schema.String).annotate({
    description: "a system message to put first when converting to messages"
  }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "rows that could not be converted, kept as examples in report.json" })
})
export type FormatParams = typeof FormatParams.Type

const inputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }

export const runFormat = async (ctx: StepContext<FormatParams, typeof inputs>): Promise<void> => {
  const p = ctx.params
  const from = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const why = unsupported(from, p.to)
  if (why !== undefined) throw new Error(`step "${ctx.step}": cannot convert ${from} to ${p.to}: ${why}`)
  const reader = readRows(ctx.inputs.data, schemaOf(from), { onInvalid: p.onInvalid })
  const writer = new DatasetWriter(ctx.output, p.to)
  const log = new RemovalLog(ctx.output, p.examples)
  for await (const r of reader.located()) {
    const out = convertRow(r.row as Record<string, unknown>, from, p.to, { template: p.template, system: p.system })
    if (typeof out !== "string") {
      writer.write(out)
      continue
    }
    if (p.onInvalid !== "skip") throw DatasetError.at(r.file, r.line, `cannot convert to ${p.to}: ${out}`)
    log.remove("unconvertible", locationOf(r), out)
  }
  const rows = writer.close()
  log.close()
  writeReport(ctx.output, {
    step: "format",
    from,
    to: p.to,
    template: p.template,
    input: reader.stats.rows,
    kept: rows,
    removed: log.total,
    invalidSkipped: reader.stats.skipped,
    invalidExamples: reader.stats.examples,
    examples: log.examples
  })
  ctx.metric("rows_in", reader.stats.rows)
  ctx.metric("rows_out", rows)
  ctx.metric("skipped", log.total + reader.stats.skipped)
}

export const format = defineStep({
  kind: "format",
  version: 2,
  description: "converts rows between text, instruction, prompt-completion, messages and preference where defined",
  params: FormatParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  run: runFormat
})
