import { describe, expect, it } from "vitest"
import { renderShow } from "../../../cli/render/show.ts"
import type { ShowRecord } from "../../../cli/render/show.ts"
import type { ShowData } from "../../../cli/show.ts"

const sft: ShowRecord = {
  step: "sft",
  kind: "sft",
  status: "built",
  key: "4f8dd35ca521",
  params: { lr: 0.0002, epochs: 3, lora: { r: 16, alpha: 32 }, log_every: 10, template: "chatml" },
  trace: { version: 2, params: { lr: 0.0002, epochs: 3, lora: { r: 16, alpha: 32 }, template: "chatml" } },
  inputs: { data: "9c1d2233bb", model: "77aa00" },
  output: { hash: "fad2ffab", path: "/store/artifacts/fad2ffab" },
  metrics: { loss: 1.23456, train_seconds: 250, tokens_per_second: 12_345, peak_memory_gb: 14.2 },
  log: "/store/logs/3/sft.log",
  seconds: 251,
  error: null,
  summary: "/store/logs/3/summary.md"
}

describe("show rendering", () => {
  it("prints the header, an aligned params table, inputs and metrics with units", () => {
    expect(renderShow(sft)).toBe([
      "sft  sft  built",
      "  key      4f8dd35ca521",
      "  output   fad2ffab",
      "  path     /store/artifacts/fad2ffab",
      "  version  2",
      "  time     4m 11s",
      "  log      /store/logs/3/sft.log",
      "  report   /store/logs/3/summary.md",
      "",
      "params",
      "  lr          0.0002",
      "  epochs      3",
      "  lora.r      16",
      "  lora.alpha  32",
      "  log_every   10  (not in key)",
      "  template    \"chatml\"",
      "",
      "inputs",
      "  data   9c1d2233bb",
      "  model  77aa00",
      "",
      "metrics",
      "  loss               1.235",
      "  peak_memory_gb     14.2 GB",
      "  tokens_per_second  12.3k tok/s",
      "  train_seconds      4m 10s",
      ""
    ].join("\n"))
  })

  it("shows a step that never ran and the error of a failed one", () => {
    const never = renderShow({ ...sft, status: "never run", key: null, output: null, trace: null, metrics: {}, log: null, seconds: null, summary: null, inputs: {} })
    expect(never.split("\n").slice(0, 2)).toEqual(["sft  sft  never run", "  key  —"])
    expect(never).not.toContain("(not in key)")
    const failed = renderShow({ ...sft, status: "failed", error: "boom\nat line 3" })
    expect(failed).toContain("error\n  boom\n  at line 3")
  })

  it("accepts the show command's data as it is", () => {
    const data: ShowData = {
      ...sft,
      trace: { kind: "sft", version: 2, params: sft.trace!.params, inputs: { data: "9c1d2233bb" } },
      error: null,
      summary: null
    }
    expect(renderShow(data)).toContain("lora.alpha  32")
  })
})
