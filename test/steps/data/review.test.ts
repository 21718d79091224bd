import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { categorize, questionSimilarity, tokenF1, wordEditDistance } from "../../../steps/data/review.ts"

const cases = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, "fixtures", "review-cases.json"), "utf8")) as Array<any>

describe("review categories", () => {
  it.each(cases.map((c, i) => [i, c] as const))("case %i gets its documented category", (_, c) => {
    expect(categorize(c).category).toBe(c.category)
  })

  it("measures word edit distance, reordering and token F1", () => {
    expect(wordEditDistance(["a", "b", "c"], ["a", "x", "c", "d"])).toBe(2)
    expect(questionSimilarity("the cat sat", "sat the cat")).toBe(1)
    expect(questionSimilarity("one two three four", "one two three five")).toBe(0.75)
    expect(tokenF1(["a", "b"], ["b", "c"])).toBe(0.5)
  })
})
