/**
 * `format`: converts a dataset between row formats (see convert.ts for what converts to what). The
 * whole conversion is refused before reading when the pair of formats is not defined; a row that
 * cannot convert (a multi-turn conversation to prompt-completion) is an error naming file:line, or,
 * with onInvalid: "skip", is counted in the report. It also converts between JSONL and Parquet and
 * re-shards (`as`, `shards`, `rowsPerShard`), a format to the same format included. A converted row
 * keeps the source row's fields beyond its format's (ids, urls, metadata). Runs as shard tasks
 * (map-fanout.ts).
 */
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, Port, type StepContext } from "../../engine/step.ts"
import { NonNegativeInt, OnInvalid, PositiveInt, withDefault } from "./common.ts"
import { convertRow, unsupported } from "./convert.ts"
import { DatasetError } from "./errors.ts"
import { concreteFormats, detectFormat, type ConcreteFormat } from "./formats.ts"
import { columnsOf } from "./parquet.ts"
import { FanoutParams, fanoutExecutionOnly, registerMapper, runMapStep } from "./map-fanout.ts"
import { writeReport } from "./writer.ts"

export const FormatParams = Schema.Struct({
  to: Schema.optionalKey(Schema.Literals(concreteFormats as ReadonlyArray<ConcreteFormat>)).annotate({
    description: "the row format to convert to; default: the input's (to change only the file format or the sharding)"
  }),
  template: withDefault(Schema.Literals(["plain", "alpaca"]), "plain").annotate({
    description: "how an instruction row becomes a prompt: \"alpaca\" (Platypus' template) or \"plain\" (instruction, blank line, input)"
  }),
  system: Schema.optionalKey(Schema.String).annotate({
    description: "a system message to put first when converting to messages"
  }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "rows that could not be converted, kept as examples in report.json" }),
  as: Schema.optionalKey(Schema.Literals(["jsonl", "parquet"])).annotate({
    description: "file format of the output: jsonl or parquet (Hugging Face shard layout); default: parquet when the input has Parquet shards, else jsonl"
  }),
  shards: Schema.optionalKey(PositiveInt).annotate({ description: "output shards `data/train-NNNNN-of-NNNNN.*`, rows split evenly in order" }),
  rowsPerShard: Schema.optionalKey(PositiveInt).annotate({ description: "rows per output shard (the last holds the rest)" }),
  ...FanoutParams
})
export type FormatParams = typeof FormatParams.Type

const inputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }

/** A converted row with the source row's fields beyond its format's (ids, urls, metadata) after its own. */
const withExtraFields = (out: Record<string, unknown>, row: Record<string, unknown>, from: ConcreteFormat): Record<string, unknown> => {
  if (out === row) return out
  const known = columnsOf[from]
  let merged: Record<string, unknown> | undefined
  for (const k in row) {
    if (known.includes(k) || k in out) continue
    merged ??= { ...out }
    merged[k] = row[k]
  }
  return merged ?? out
}

registerMapper("format", async (spec) => {
  const p = spec.params as FormatParams
  const from = spec.format
  const to = p.to ?? from
  return {
    map: (r) => {
      const out = convertRow(r.row, from, to, { template: p.template, system: p.system })
      if (typeof out !== "string") return { keep: withExtraFields(out as Record<string, unknown>, r.row, from) }
      if (p.onInvalid !== "skip") throw DatasetError.at(r.file, r.line, `cannot convert to ${to}: ${out}`)
      return { remove: { rule: "unconvertible", text: out } }
    }
  }
})

export const runFormat = async (ctx: StepContext<FormatParams, typeof inputs>): Promise<void> => {
  const p = ctx.params
  const from = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const to = p.to ?? from
  const why = unsupported(from, to)
  if (why !== undefined) throw new Error(`step "${ctx.step}": cannot convert ${from} to ${to}: ${why}`)
  const layout = p.as === undefined && p.shards === undefined && p.rowsPerShard === undefined ? undefined
    : { ...(p.as === undefined ? {} : { as: p.as }), ...(p.shards === undefined ? {} : { shards: p.shards }), ...(p.rowsPerShard === undefined ? {} : { rowsPerShard: p.rowsPerShard }) }
  const m = await runMapStep(ctx, { mapper: "format", input: ctx.inputs.data, format: from, outFormat: to, params: p, output: layout })
  writeReport(ctx.output, {
    step: "format",
    from,
    to,
    template: p.template,
    input: m.rowsIn,
    kept: m.kept,
    removed: m.removed,
    invalidSkipped: m.skipped,
    invalidExamples: m.invalidExamples,
    examples: m.examples
  })
  ctx.metric("rows_in", m.rowsIn)
  ctx.metric("rows_out", m.kept)
  ctx.metric("skipped", m.removed + m.skipped)
}

export const format = defineStep({
  kind: "format",
  version: 3,
  description: "converts rows between text, instruction, prompt-completion, messages and preference where defined",
  params: FormatParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? 2 }),
  executionOnly: fanoutExecutionOnly,
  run: runFormat
})
