/**
 * The order steps are planned, run and reported in is Kahn's algorithm, stable in declaration order
 * (ready steps in the order they became ready). topoSort computes it on flat typed arrays; it must give
 * exactly the order of the plain formulation below, on any graph, including edges to steps declared
 * later (`after`), and name a cycle.
 */
import { describe, expect, it } from "vitest"
import { RecipeError } from "../../engine/errors.ts"
import { topoSort } from "../../engine/graph.ts"
import type { PlannedStep } from "../../engine/graph.ts"

/** Kahn's algorithm as it reads: a queue of ready steps, each step's dependents in declaration order. */
const reference = (steps: ReadonlyMap<string, { readonly needs: ReadonlyArray<string> }>): Array<string> => {
  const ids = [...steps.keys()]
  const indegree = new Map(ids.map((id) => [id, steps.get(id)!.needs.length]))
  const dependents = new Map<string, Array<string>>()
  for (const id of ids) for (const d of steps.get(id)!.needs) dependents.set(d, [...(dependents.get(d) ?? []), id])
  const ready = ids.filter((id) => indegree.get(id) === 0)
  for (let k = 0; k < ready.length; k++) {
    for (const d of dependents.get(ready[k]!) ?? []) {
      indegree.set(d, indegree.get(d)! - 1)
      if (indegree.get(d) === 0) ready.push(d)
    }
  }
  return ready
}

const graph = (n: number, rand: () => number, later: boolean): Map<string, PlannedStep> => {
  const steps = new Map<string, PlannedStep>()
  const ids = Array.from({ length: n }, (_, i) => `s${i}`)
  for (let i = 0; i < n; i++) {
    const needs = new Set<string>()
    for (let k = Math.floor(rand() * 4); k > 0 && i > 0; k--) needs.add(ids[Math.floor(rand() * i)]!)
    // an `after` naming a step declared later (never itself, never closing a cycle: only forward of i)
    if (later && i + 1 < n && rand() < 0.1) needs.add(ids[i + 1 + Math.floor(rand() * (n - i - 1))]!)
    steps.set(ids[i]!, { id: ids[i]!, needs: [...needs] } as unknown as PlannedStep)
  }
  return steps
}

describe("topological order", () => {
  it("is Kahn's order, stable in declaration order, on random graphs", () => {
    let seed = 7
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)
    for (let t = 0; t < 300; t++) {
      const steps = graph(1 + Math.floor(rand() * 60), rand, t % 2 === 1)
      let expected: Array<string>
      try {
        expected = reference(steps)
      } catch {
        continue
      }
      if (expected.length < steps.size) {
        // forward `after` edges can close a cycle with a backward need
        expect(() => topoSort(steps)).toThrow(RecipeError)
        continue
      }
      expect(topoSort(steps).map((s) => s.id)).toEqual(expected)
    }
  })

  it("names a cycle", () => {
    const steps = new Map([
      ["a", { id: "a", needs: ["c"] }],
      ["b", { id: "b", needs: ["a"] }],
      ["c", { id: "c", needs: ["b"] }],
      ["d", { id: "d", needs: [] }]
    ] as unknown as Array<[string, PlannedStep]>)
    expect(() => topoSort(steps)).toThrow("the recipe has a cycle: a -> b -> c -> a")
  })
})
