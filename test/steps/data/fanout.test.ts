/**
 * Data steps as shard tasks: the output (every file of the artifact) is the same for any cut of the
 * input into tasks and any number of workers, and for JSONL vs Parquet shards of the same rows.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { clean } from "../../../steps/data/clean.ts"
import { decontaminate } from "../../../steps/data/decontaminate.ts"
import { format } from "../../../steps/data/format.ts"
import { rng } from "./corpus.ts"
import { runStep, tempDir, writeJsonl } from "./helpers.ts"

/** A digest of every file below dir (names and bytes): equal digests, equal artifact hashes. */
export const treeDigest = (dir: string): string => {
  const h = createHash("sha256")
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name)
      if (fs.statSync(path.join(dir, r)).isDirectory()) walk(r)
      else h.update(`${r}\0`).update(fs.readFileSync(path.join(dir, r))).update("\0")
    }
  }
  walk("")
  return h.digest("hex")
}

/** Instruction rows, some dirty, short or duplicated, one leaking a benchmark question. */
export const instructionRows = (n: number, seed = 7): Array<Record<string, string>> => {
  const r = rng(seed)
  const words = Array.from({ length: 500 }, (_, i) => "word" + i.toString(36))
  const sentence = (k: number) => Array.from({ length: k }, () => words[Math.floor(r() * words.length)]).join(" ")
  return Array.from({ length: n }, (_, i) => {
    const q = i % 97 === 5 ? "What is the boiling point of water at sea level in degrees Celsius on a normal day" : sentence(3 + Math.floor(r() * 20))
    return { instruction: (i % 13 === 0 ? "  " : "") + q + (i % 17 === 0 ? "\u0007" : ""), input: i % 5 === 0 ? sentence(4) : "", output: sentence(1 + Math.floor(r() * 30)) }
  })
}

describe("data steps fan out", () => {
  it("clean, format and decontaminate give the same bytes for 1, 3 and 8 tasks and 1 or 3 workers", async () => {
    const dir = tempDir()
    const data = writeJsonl(path.join(dir, "in.jsonl"), instructionRows(3000))
    const bench = writeJsonl(path.join(dir, "bench.jsonl"), [{ question: "What is the boiling point of water at sea level in degrees Celsius on a normal day?", answer: "100" }])
    const cases = [
      { step: clean, inputs: { data }, params: { minWords: 5 } },
      { step: format, inputs: { data }, params: { to: "messages", system: "be brief" } },
      { step: decontaminate, inputs: { data, benchmarks: [bench] }, params: { n: 8 } }
    ]
    for (const c of cases) {
      const runs = [
        { tasks: 1, workers: 1 },
        { tasks: 3, workers: 1 },
        { tasks: 8, workers: 3 }
      ]
      const digests = new Set<string>()
      for (const x of runs) {
        const r = await runStep(c.step, c.inputs, { ...c.params, ...x })
        expect(r.metrics.rows_in).toBe(3000)
        digests.add(treeDigest(r.output))
      }
      expect(digests.size, (c.step as { definition: { kind: string } }).definition.kind).toBe(1)
    }
  })
})
