import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { dedup } from "../../../steps/data/dedup.ts"
import { bruteForcePairs, plantedCorpus } from "./corpus.ts"
import { readJsonlFile, runStep, tempDir, writeJsonl } from "./helpers.ts"

describe("dedup minhash", () => {
  const { docs } = plantedCorpus(7, 2000)
  const file = writeJsonl(path.join(tempDir(), "corpus.jsonl"), docs.map((text) => ({ text })))
  const truth = bruteForcePairs(docs, 5)
  const lineOf = (at: string) => Number(at.split(":")[1]) - 1

  it("finds near-duplicates with recall >= 0.95 (Jaccard >= 0.9) and precision >= 0.99", async () => {
    const r = await runStep(dedup, { data: file }, { method: "minhash", keep: "first" }, { cpus: 2 })
    const removed = readJsonlFile(path.join(r.output, "removed.jsonl"))
    // a cluster per kept row: removed rows point at their cluster's kept row
    const cluster = new Map<number, number>()
    for (const x of removed) cluster.set(lineOf(x.at), lineOf(x.duplicateOf))
    const rootOf = (i: number) => cluster.get(i) ?? i
    const high = [...truth].filter(([, j]) => j >= 0.9).map(([k]) => k.split("-").map(Number) as [number, number])
    expect(high.length).toBeGreaterThan(200)
    const caught = high.filter(([a, b]) => rootOf(a) === rootOf(b)).length
    expect(caught / high.length).toBeGreaterThanOrEqual(0.95)
    // every removal claims "this row is a near-duplicate of that one": check the claim exactly.
    // A claim is right when the true Jaccard is >= 0.7: the 0.8 threshold less 2.5 standard deviations
    // of the 112-hash estimate, which is noise the method cannot avoid.
    const key = (a: number, b: number) => (a < b ? `${a}-${b}` : `${b}-${a}`)
    const right = removed.filter((x) => (truth.get(key(lineOf(x.at), lineOf(x.duplicateOf))) ?? 0) >= 0.7).length
    expect(removed.length).toBeGreaterThan(300)
    expect(right / removed.length).toBeGreaterThanOrEqual(0.99)
    expect(r.report).toMatchObject({ method: "minhash", input: docs.length, kept: docs.length - removed.length, numHashes: 112 })
  })

  it("gives the same result on 1 and 2 threads, and a different seed still finds the duplicates", async () => {
    const one = await runStep(dedup, { data: file }, { method: "minhash", threads: 1 })
    const two = await runStep(dedup, { data: file }, { method: "minhash", threads: 2 })
    expect(fs.readFileSync(path.join(two.output, "data.jsonl"), "utf8")).toBe(fs.readFileSync(path.join(one.output, "data.jsonl"), "utf8"))
    expect(two.report).toEqual(one.report)
    const other = await runStep(dedup, { data: file }, { method: "minhash", minhash: { seed: 42 } })
    expect(Math.abs(other.report.removed - one.report.removed)).toBeLessThan(one.report.removed * 0.05)
  })

  it("keeps the longest row of a cluster unless asked for the first", async () => {
    const text = "the cat sat on the mat and looked at the birds outside the window for a long time"
    const f = writeJsonl(path.join(tempDir(), "c.jsonl"), [{ text }, { text: text + " today" }, { text: "something else entirely different here" }])
    const longest = await runStep(dedup, { data: f }, { method: "minhash", minhash: { threshold: 0.7 } })
    expect(longest.rows.map((x) => x.text)).toEqual([text + " today", "something else entirely different here"])
    const firstKept = await runStep(dedup, { data: f }, { method: "minhash", keep: "first", minhash: { threshold: 0.7 } })
    expect(firstKept.rows.map((x) => x.text)).toEqual([text, "something else entirely different here"])
  })
})
