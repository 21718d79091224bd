import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { format } from "../../../steps/data/format.ts"
import { errorOf, runStep, tempDir, writeJsonl } from "./helpers.ts"

const dir = tempDir()
const instr = writeJsonl(path.join(dir, "instr.jsonl"), [
  { instruction: "Add the numbers.", input: "2 and 3", output: "5" },
  { instruction: "Say hi.", output: "Hi!" }
])

describe("format", () => {
  it("turns instruction rows into Alpaca prompt-completion rows", async () => {
    const r = await runStep(format, { data: instr }, { to: "prompt-completion", template: "alpaca" })
    expect(r.rows[0]).toEqual({
      prompt:
        "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n",
      completion: "5"
    })
    expect(r.rows[1].prompt).toContain("### Instruction:\nSay hi.\n\n### Response:\n")
    expect(r.report).toMatchObject({ from: "instruction", to: "prompt-completion", input: 2, kept: 2 })
  })

  it("turns instruction rows into messages (with a system turn) and text, and back", async () => {
    const m = await runStep(format, { data: instr }, { to: "messages", system: "Be brief." })
    expect(m.rows[0]).toEqual({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Add the numbers.\n\n2 and 3" },
        { role: "assistant", content: "5" }
      ]
    })
    const back = await runStep(format, { data: m.output }, { to: "instruction" })
    expect(back.rows[1]).toEqual({ instruction: "Say hi.", output: "Hi!" })
    const t = await runStep(format, { data: instr }, { to: "text" })
    expect(t.rows[1]).toEqual({ text: "Say hi.\n\nHi!" })
  })

  it("refuses undefined conversions and multi-turn rows clearly, or skips and counts them", async () => {
    const text = writeJsonl(path.join(dir, "text.jsonl"), [{ text: "hello" }])
    expect(await errorOf(runStep(format, { data: text }, { to: "instruction" }))).toContain("cannot convert text to instruction")
    expect(await errorOf(runStep(format, { data: instr }, { to: "preference" }))).toContain("needs a rejected answer")
    const multi = writeJsonl(path.join(dir, "multi.jsonl"), [
      { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] },
      { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }, { role: "user", content: "c" }, { role: "assistant", content: "d" }] }
    ])
    expect(await errorOf(runStep(format, { data: multi }, { to: "prompt-completion" }))).toContain(`${multi}:2: cannot convert to prompt-completion: only a single-turn conversation`)
    const skipped = await runStep(format, { data: multi }, { to: "prompt-completion", onInvalid: "skip" })
    expect(skipped.rows).toEqual([{ prompt: "a", completion: "b" }])
    expect(skipped.report.removed).toBe(1)
  })
})
