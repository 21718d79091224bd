import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { decontaminate, DecontaminateParams } from "../../../steps/data/decontaminate.ts"
import { executeTask } from "../../../steps/data/fanout.ts"
import { writeFlagged } from "../../../steps/data/flagged-pairs.ts"
import type { MapTaskResult, MapTaskSpec } from "../../../steps/data/map-fanout.ts"
import { categories, listingOf, reviewMarkdown, reviewPairsPerCategory } from "../../../steps/data/review.ts"
import { planPieces } from "../../../steps/data/shards.ts"
import { errorOf, readJsonlFile, runStep, tempDir, treeDigest, writeJsonl } from "./helpers.ts"

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
    const flagged = readJsonlFile(path.join(r.output, "flagged.jsonl"))
    expect(flagged.map((p: any) => [p.train, p.benchmark, p.item, p.category])).toEqual([
      ["train.jsonl:2", "sci", "sci.jsonl:1", "duplicate"],
      ["train.jsonl:3", "sci", "sci.jsonl:1", "gray area"],
      ["train.jsonl:4", "sci", "sci.jsonl:2", "similar but different"],
      // the question sits in the input behind a generic instruction: not verbatim, same answer
      ["train.jsonl:6", "arc", "arc.jsonl:1", "gray area"]
    ])
    expect(flagged[0]).toMatchObject({ score: 1, benchAnswer: "2.09 s", answerAgrees: true, removed: true })
    expect(flagged[3].benchAnswer).toBe("The Roman Empire")
    expect(r.report).toMatchObject({ flaggedPairs: 4, pairsFile: "flagged.jsonl", examples: flagged })
    expect(r.report.pairs).toBeUndefined()
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

describe("decontaminate's flagged pairs, bounded in memory", () => {
  const words = Array.from({ length: 300 }, (_, i) => "w" + i.toString(36))
  /** n rows of filler; a row in 3 leaks the physics item (with the answer: duplicate), a row in 5 the
   * geometry item with another answer (similar but different), a row in 7 the physics item behind an
   * instruction (gray area); some rows leak two items. */
  const leakyRows = (n: number): Array<{ instruction: string; input?: string; output: string }> =>
    Array.from({ length: n }, (_, i) => {
      const filler = Array.from({ length: 6 + (i % 9) }, (_, k) => words[(i * 31 + k * 7) % words.length]).join(" ")
      if (i % 7 === 2) return { instruction: `Help me with this homework problem, ${filler}: ${physics}`, output: "2.09 s" }
      if (i % 3 === 0) return { instruction: physics, output: `The period is 2.09 s. ${filler}` }
      if (i % 5 === 1) return { instruction: geometry, input: i % 2 === 0 ? physics : "", output: `quadrant I, ${filler}` }
      return { instruction: `Tell me about ${filler}.`, output: filler }
    })

  it("flagged.jsonl holds every pair in input order, report.json its counts and first pairs, review.md the first of each category; the same bytes for 1, 3 and 8 tasks", async () => {
    const rows = leakyRows(2000)
    const data = writeJsonl(path.join(tempDir(), "leaky.jsonl"), rows)
    const digests = new Set<string>()
    for (const x of [{ tasks: 1, workers: 1 }, { tasks: 3, workers: 1 }, { tasks: 8, workers: 2 }]) {
      const r = await runStep(decontaminate, { data, benchmarks: [bench] }, { benchmark: fields[0], examples: 3, ...x })
      digests.add(treeDigest(r.output))
      const flagged = readJsonlFile(path.join(r.output, "flagged.jsonl"))
      // input order: by line, then by item within a line
      const order = flagged.map((p: any): [number, number] => [Number(p.train.split(":")[1]), Number(p.item.split(":")[1])])
      expect(order).toEqual([...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]))
      // every leaking row is there: each of the three leaks as planted
      const lines = new Set(order.map(([line]) => line - 1))
      expect([...lines].sort((a, b) => a - b)).toEqual(rows.flatMap((_, i) => (i % 7 === 2 || i % 3 === 0 || i % 5 === 1 ? [i] : [])))
      expect(flagged.length).toBeGreaterThan(lines.size) // rows with two items give two pairs
      const count = (c: string) => flagged.filter((p: any) => p.category === c).length
      expect(r.report.flaggedPairs).toBe(flagged.length)
      expect(r.report.byCategory).toEqual({ duplicate: count("duplicate"), "gray area": count("gray area"), "similar but different": count("similar but different") })
      for (const c of categories) expect(count(c), c).toBeGreaterThan(0)
      expect(r.report.examples).toEqual(flagged.slice(0, 3))
      expect(r.report.pairsFile).toBe("flagged.jsonl")
      expect(r.metrics.flagged_pairs).toBe(flagged.length)
      // review.md: the first 200 pairs of a category, then how many more flagged.jsonl holds
      const review = fs.readFileSync(path.join(r.output, "review.md"), "utf8")
      expect(review).toBe(reviewMarkdown("Decontamination review (13-gram overlap)", listingOf(flagged)))
      const duplicates = count("duplicate")
      expect(duplicates).toBeGreaterThan(reviewPairsPerCategory)
      expect(review).toContain(`## duplicate (${duplicates})`)
      expect(review).toContain(`... and ${duplicates - reviewPairsPerCategory} more: see flagged.jsonl`)
      const listed = categories.reduce((a, c) => a + Math.min(count(c), reviewPairsPerCategory), 0)
      expect(review.split("\n").filter((l) => l.startsWith("| leaky.jsonl:"))).toHaveLength(listed)
    }
    expect(digests.size).toBe(1)
  })

  it("when every row is flagged, a shard task returns at most `examples` pairs and streams the rest to its file; the report holds none beyond them", async () => {
    const n = 30_000
    const rows = Array.from({ length: n }, (_, i) => ({ instruction: `Row ${i}. ${physics}`, output: `T = ${i}` }))
    const data = writeJsonl(path.join(tempDir(), "all-leaky.jsonl"), rows)
    // one task run as the step runs it: its result (sent back to the step) carries counts and 4 pairs
    const params = Schema.decodeUnknownSync(DecontaminateParams)({ benchmark: fields[0], examples: 4 })
    const [piece] = await planPieces(data, 1)
    const taskDir = path.join(tempDir(), "00000")
    const result = (await executeTask({
      op: "map", id: "00000", dir: taskDir, mapper: "decontaminate", piece: piece!, format: "instruction", onInvalid: "error",
      examples: 4, params, inputs: { benchmarks: [bench] }
    } satisfies MapTaskSpec)) as unknown as MapTaskResult
    expect(result.extra.flaggedPairs).toBe(n)
    expect((result.extra.examples as Array<unknown>).length).toBe(4)
    expect(Object.keys(result.extra).sort()).toEqual(["byCategory", "examples", "flaggedPairs"])
    expect(fs.readFileSync(path.join(taskDir, "pairs.jsonl"), "utf8").split("\n").filter((l) => l !== "")).toHaveLength(n)

    const r = await runStep(decontaminate, { data, benchmarks: [bench] }, { benchmark: fields[0], examples: 4, tasks: 3 }, { rows: false })
    expect(r.report).toMatchObject({ input: n, removed: n, flaggedPairs: n, pairsFile: "flagged.jsonl" })
    expect(r.report.examples).toHaveLength(4)
    expect(Object.values(r.report).filter(Array.isArray).every((a) => (a as Array<unknown>).length <= 4)).toBe(true)
    const flagged = fs.readFileSync(path.join(r.output, "flagged.jsonl"), "utf8").split("\n").filter((l) => l !== "")
    expect(flagged).toHaveLength(n)
    expect(JSON.parse(flagged[n - 1]!).train).toBe(`all-leaky.jsonl:${n}`)
    const review = fs.readFileSync(path.join(r.output, "review.md"), "utf8")
    expect(review.split("\n").filter((l) => l.startsWith("| all-leaky.jsonl:"))).toHaveLength(reviewPairsPerCategory)
    expect(review).toContain(`... and ${n - reviewPairsPerCategory} more: see flagged.jsonl`)
  })

  it("fails naming the mismatch when a task's pair file and its counts disagree", () => {
    const dir = tempDir()
    const file = path.join(dir, "pairs.jsonl")
    fs.writeFileSync(file, JSON.stringify({ train: "a:1", category: "duplicate" }) + "\n")
    expect(() => writeFlagged([file], dir, { flaggedPairs: 2, byCategory: { duplicate: 2, "gray area": 0, "similar but different": 0 } }, 10)).toThrow(
      "the tasks reported 2 flagged pairs but their pair files hold 1 lines"
    )
    expect(() => writeFlagged([path.join(dir, "nope.jsonl")], dir, { flaggedPairs: 0, byCategory: { duplicate: 0, "gray area": 0, "similar but different": 0 } }, 10)).toThrow(
      /nope\.jsonl is missing/
    )
  })
})
