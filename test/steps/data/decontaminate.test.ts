import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { decontaminate } from "../../../steps/data/decontaminate.ts"
import { errorOf, readJsonlFile, runStep, tempDir, writeJsonl } from "./helpers.ts"

const physics = "A wheel of radius 0.5 m rotates about the x axis at a constant angular speed of 3 rad/s. What is the period of its rotation?"
const geometry = "On the coordinate plane a point has an x value of three and a y value of minus four. Which quadrant holds the point?"
const history = "Which empire built the network of roads that connected Rome to the far provinces of Britain and Syria in antiquity?"

const dir = tempDir()
const bench = writeJsonl(path.join(dir, "sci.jsonl"), [
  { question: physics, choices: ["2.09 s", "1.05 s", "6.28 s"], answer: 0 },
  { question: geometry, choices: ["I", "II", "III", "quadrant IV"], answer: 3 },
  { question: "What is 2+2?", choices: ["4", "5"], answer: 0 }
])
const arc = writeJsonl(path.join(dir, "arc.jsonl"), [
  { question: { stem: history }, choices: { text: ["The Roman Empire", "The Inca Empire"], label: ["A", "B"] }, answerKey: "A" }
])
const train = [
  { instruction: "Explain photosynthesis in simple terms for a ten year old student who loves plants.", output: "Plants make food from light." },
  { instruction: physics, output: "The period is 2.09 s." },
  { instruction: "My teacher gave this as homework and I would love some help with the following problem: " + physics, output: "T = 2π/ω = 2.09 s" },
  { instruction: geometry.replace("minus four", "plus four"), output: "It lies in quadrant I." },
  // shares 12 consecutive words with the physics item: one short of a 13-gram
  { instruction: "Consider a wheel of radius 0.5 m rotates about the x axis, then stops quickly for good.", output: "ok" },
  { instruction: "Answer this history question.", input: history, output: "The Roman Empire built them." }
]
const trainFile = writeJsonl(path.join(dir, "train.jsonl"), train)
const fields = [{ question: "question", choices: "choices", answer: "answer" }, { question: "question.stem", choices: "choices", answer: "answerKey" }]

describe("decontaminate (n-gram)", () => {
  it("removes exactly the planted leaks and categorizes every flagged pair", async () => {
    const r = await runStep(decontaminate, { data: trainFile, benchmarks: [bench, arc] }, { benchmark: fields })
    expect(r.rows).toEqual([train[0], train[4]])
    expect(r.report.byCategory).toEqual({ duplicate: 1, "gray area": 2, "similar but different": 1 })
    expect(r.report.pairs.map((p: any) => [p.train, p.benchmark, p.item, p.category])).toEqual([
      ["train.jsonl:2", "sci", "sci.jsonl:1", "duplicate"],
      ["train.jsonl:3", "sci", "sci.jsonl:1", "gray area"],
      ["train.jsonl:4", "sci", "sci.jsonl:2", "similar but different"],
      // the question sits in the input behind a generic instruction: not verbatim, same answer
      ["train.jsonl:6", "arc", "arc.jsonl:1", "gray area"]
    ])
    expect(r.report.pairs[0]).toMatchObject({ score: 1, benchAnswer: "2.09 s", answerAgrees: true, removed: true })
    expect(r.report.pairs[3].benchAnswer).toBe("The Roman Empire")
    expect(r.report.benchmarkItemsTooShort).toBe(1)
    expect(r.metrics).toMatchObject({ rows_in: 6, rows_out: 2, removed: 4, "flagged.duplicate": 1 })
    expect(readJsonlFile(path.join(r.output, "removed.jsonl")).map((x) => x.at)).toEqual(["train.jsonl:2", "train.jsonl:3", "train.jsonl:4", "train.jsonl:6"])
    const review = fs.readFileSync(path.join(r.output, "review.md"), "utf8")
    expect(review).toContain("## duplicate (1)")
    expect(review).toContain("## similar but different (1)")
    expect(review).toMatch(/\| train\.jsonl:4 \| sci sci\.jsonl:2 \| [0-9.]+ \| [0-9.]+ \| no \| yes \|/)
  })

  it("removes only the chosen categories but still lists every pair", async () => {
    const r = await runStep(decontaminate, { data: trainFile, benchmarks: [bench, arc] }, { benchmark: fields, remove: ["duplicate"] })
    expect(r.rows).toEqual([train[0], train[2], train[3], train[4], train[5]])
    expect(r.report.flaggedPairs).toBe(4)
  })

  it("a smaller n catches the 12-word overlap", async () => {
    const r = await runStep(decontaminate, { data: trainFile, benchmarks: [bench] }, { n: 12, benchmark: fields[0] })
    expect(r.rows.map((x: any) => x.instruction)).not.toContain(train[4]!.instruction)
  })

  it("errors clearly on a missing benchmark file, a missing field, an unresolvable answer and no benchmarks", async () => {
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [path.join(dir, "nope.jsonl")] }))).toContain(
      "nope.jsonl: dataset not found"
    )
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [arc] }))).toContain(
      "arc.jsonl:1: field question: expected a string"
    )
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [bench] }, { benchmark: { question: "q" } }))).toContain(
      "sci.jsonl:1: field q: missing"
    )
    const bad = writeJsonl(path.join(dir, "bad.jsonl"), [{ question: physics, choices: ["a"], answer: 5 }])
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [bad] }, { benchmark: fields[0] }))).toContain(
      "bad.jsonl:1: field answer: cannot resolve 5 against 1 choices"
    )
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [] }))).toContain("at least one benchmark")
    const empty = writeJsonl(path.join(dir, "empty.jsonl"), [])
    expect(await errorOf(runStep(decontaminate, { data: trainFile, benchmarks: [empty] }))).toContain("empty.jsonl: dataset is empty")
  })
})
