/**
 * recipes/phi.ts wires the teacher -> generate -> dedup -> decontaminate -> student chain. The steps
 * themselves are tested in test/steps/generate/ and test/steps/data/; the whole recipe runs with
 * `npx anneal run recipes/phi.ts --allow-cpu` (about 4 minutes on 2 loaded cores).
 */
import * as path from "node:path"
import { expect, it } from "vitest"
import { loadRecipe } from "../../engine/load.ts"

it("the student is pretrained on the teacher's textbooks after dedup and decontamination against the quiz", async () => {
  const graph = await loadRecipe(path.resolve(import.meta.dirname, "../../recipes/phi.ts"))
  const step = (id: string) => {
    const s = graph.byId.get(id)
    expect(s, id).toBeDefined()
    return s!
  }
  expect(step("generate").def.kind).toBe("generate")
  expect(step("generate").needs).toEqual(["pretrain"])
  expect((step("generate").params as { mode: string }).mode).toBe("textbook")
  expect(step("dedup").needs).toEqual(["generate"])
  expect([...step("decontaminate").needs].sort()).toEqual(["dedup", "quiz"])
  expect(step("pretrain-student").needs).toContain("decontaminate")
  expect(step("eval").needs).toContain("pretrain")
  expect(step("eval-student").needs).toContain("pretrain-student")
})
