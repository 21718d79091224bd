/**
 * A small recipe of TS steps for engine tests: a chain with one branch and a join.
 *
 *   source data.txt -> upper (suffix, strip) -> count -> join <- reverse <- source
 *                            \\------------------------^  (join also reads upper)
 *
 * `strip` trims lines; the generated data has no surrounding spaces, so flipping it changes upper's key
 * but not its output (the early-cutoff case). `sleep` (seconds, execution-only) slows a step down for
 * kill and concurrency tests.
 */
import { annealIndex } from "./project.ts"

export interface ChainParams {
  readonly suffix?: string
  readonly strip?: boolean
  readonly reverseTimes?: number
  readonly sleepUpper?: number
  readonly countVersion?: number
}

export const chainRecipe = (p: ChainParams = {}): string => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Text, Schema, Effect } from ${JSON.stringify(annealIndex)}

const lines = (p: string) => {
  const f = fs.statSync(p).isDirectory() ? path.join(p, "data.jsonl") : p
  return fs.readFileSync(f, "utf8").split("\\n").filter((l) => l.length > 0)
}
const sleep = (s: number, signal: AbortSignal) => new Promise<void>((ok) => {
  const t = setTimeout(ok, s * 1000)
  signal.addEventListener("abort", () => { clearTimeout(t); ok() })
})

const upper = defineStep({
  kind: "upper", version: 1,
  params: Schema.Struct({ suffix: Schema.String, strip: Schema.Boolean, sleep: Schema.Number }),
  executionOnly: ["sleep"],
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: async (ctx) => {
    for (let i = 0; i < 10 && ctx.params.sleep > 0 && !ctx.signal.aborted; i++) {
      ctx.progress({ current: i, total: 10, unit: "ticks" })
      await sleep(ctx.params.sleep / 10, ctx.signal)
    }
    const out = lines(ctx.inputs.data).map((l) => (ctx.params.strip ? l.trim() : l).toUpperCase() + ctx.params.suffix)
    fs.writeFileSync(path.join(ctx.output, "data.jsonl"), out.join("\\n") + "\\n")
  }
})
const count = defineStep({
  kind: "count", version: ${p.countVersion ?? 1}, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.report(),
  run: (ctx) => {
    const n = lines(ctx.inputs.data).length
    ctx.metric("lines", n)
    fs.writeFileSync(path.join(ctx.output, "report.json"), JSON.stringify({ lines: n }))
  }
})
const reverse = defineStep({
  kind: "reverse", version: 1, params: Schema.Struct({ times: Schema.Int }),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: (ctx) => {
    let ls = lines(ctx.inputs.data)
    for (let i = 0; i < ctx.params.times; i++) ls = ls.map((l) => [...l].reverse().join(""))
    fs.writeFileSync(path.join(ctx.output, "data.jsonl"), ls.join("\\n") + "\\n")
  }
})
const join = defineStep({
  kind: "join", version: 1, params: Schema.Struct({}),
  inputs: { counts: Port.report(), texts: Port.many(Port.dataset(Text)) }, output: Port.files(),
  run: (ctx) => {
    const read = (p: string) => fs.readdirSync(p).sort().map((f) => fs.readFileSync(path.join(p, f), "utf8")).join("")
    const all = [read(ctx.inputs.counts), ...ctx.inputs.texts.map(read)].join("|")
    fs.writeFileSync(path.join(ctx.output, "joined.txt"), all)
  }
})

export default recipe("chain", () => {
  const data = source.dataset("data.txt", Text)
  const up = upper({ data }, { suffix: ${JSON.stringify(p.suffix ?? "!")}, strip: ${p.strip ?? false}, sleep: ${p.sleepUpper ?? 0} })
  const n = count({ data: up })
  const rev = reverse({ data }, { times: ${p.reverseTimes ?? 1} })
  join({ counts: n, texts: [rev, up] })
})
`

export const chainData = "alpha\nbeta\ngamma\n"
