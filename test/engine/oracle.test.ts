/**
 * The engine checked against an oracle, in the spirit of "Build systems a la carte" (correctBuild):
 * random small DAGs and random edit sequences; after every incremental run, each step's output equals
 * the output of a from-scratch build in an empty store (correct), the sources are untouched, and the
 * build was minimal: a step ran if and only if its key (params + input contents, which the oracle
 * computes itself by simulating the steps) was never built before in this store, so no key is built
 * twice across the sequence. Two deliberately wrong rebuilders are the negative controls: one that
 * ignores input hashes (not correct) and one that always reruns (correct but not minimal).
 * Store faults (a deleted, truncated or half-deleted artifact between runs) must not change the result:
 * the oracle also checks that each artifact a run hands over holds the content its name says, and a
 * rebuilder that restores without asking the store whether its copy is intact is a third negative control.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import { hashFile, hashTree } from "../../cache/hash.ts"
import type { Rebuilder } from "../../engine/rebuilder.ts"
import { runRecipe } from "../../engine/run.ts"
import { annealIndex, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

/** A small deterministic PRNG (mulberry32), so every failure is reproducible from its seed. */
const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

interface Node {
  readonly id: string
  readonly inputs: ReadonlyArray<string> // "src0".. or step ids
  salt: number
}

const SOURCES = 3

const randomDag = (rand: () => number, size: number): Array<Node> => {
  const nodes: Array<Node> = []
  for (let i = 0; i < size; i++) {
    const pool = [...Array.from({ length: SOURCES }, (_, k) => `src${k}`), ...nodes.map((n) => n.id)]
    const fanIn = 1 + Math.floor(rand() * Math.min(3, pool.length))
    const inputs = new Set<string>()
    while (inputs.size < fanIn) inputs.add(pool[Math.floor(rand() * pool.length)]!)
    nodes.push({ id: `s${i}`, inputs: [...inputs], salt: Math.floor(rand() * 6) })
  }
  return nodes
}

// Output depends on salt % 3 only, so some param edits change the key but not the output (early cutoff).
const recipeSource = (nodes: ReadonlyArray<Node>): string => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}
const mix = defineStep({
  kind: "oracle-mix", version: 1,
  params: Schema.Struct({ salt: Schema.Int }),
  inputs: { parts: Port.many(Port.files()) }, output: Port.files(),
  run: (ctx) => {
    const read = (p: string) => fs.statSync(p).isDirectory() ? fs.readFileSync(path.join(p, "out.txt"), "utf8") : fs.readFileSync(p, "utf8")
    const body = ctx.inputs.parts.map(read).join("+")
    fs.writeFileSync(path.join(ctx.output, "out.txt"), "(" + (ctx.params.salt % 3) + ":" + body.length + ":" + body.slice(0, 40) + ")")
  }
})
export default recipe("oracle", () => {
  const h: Record<string, any> = {}
  for (let k = 0; k < ${SOURCES}; k++) h["src" + k] = source.files("src" + k + ".txt")
${nodes.map((n) => `  h[${JSON.stringify(n.id)}] = mix({ parts: [${n.inputs.map((i) => `h[${JSON.stringify(i)}]`).join(", ")}] }, { salt: ${n.salt} }, { id: ${JSON.stringify(n.id)} })`).join("\n")}
})
`

/**
 * The oracle's own model of the recipe: each step's output text and its key (params and the contents
 * of its inputs, in order), computed in topological order from the sources without the engine.
 */
const simulate = (nodes: ReadonlyArray<Node>, sources: ReadonlyArray<string>): Map<string, { readonly out: string; readonly key: string }> => {
  const content = new Map<string, string>(sources.map((text, k) => [`src${k}`, text]))
  const result = new Map<string, { out: string; key: string }>()
  for (const n of nodes) {
    const parts = n.inputs.map((i) => content.get(i)!)
    const body = parts.join("+")
    const out = "(" + (n.salt % 3) + ":" + body.length + ":" + body.slice(0, 40) + ")"
    content.set(n.id, out)
    result.set(n.id, { out, key: JSON.stringify([n.salt, parts]) })
  }
  return result
}

const build = async (p: TempProject, store: string, rebuilder?: Rebuilder) => {
  const events: Array<EngineEvent> = []
  const summary = await runRecipe({ recipe: p.file("recipe.ts"), store, reporter: { emit: (e) => events.push(e) }, fresh: true, rebuilder, jobs: 2 })
  return { summary, events }
}

/**
 * Damages one random artifact of the incremental store between runs, as a crash, a user or a disk
 * might: the whole directory deleted, its file truncated, or its file deleted (a half-deleted directory).
 * Returns the damaged artifact's hash.
 */
const injectFault = (rand: () => number, store: string): string | undefined => {
  const dir = path.join(store, "artifacts")
  const hashes = fs.readdirSync(dir).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort()
  if (hashes.length === 0) return undefined
  const hash = hashes[Math.floor(rand() * hashes.length)]!
  const file = path.join(dir, hash, "out.txt")
  const r = rand()
  if (r < 1 / 3) fs.rmSync(path.join(dir, hash), { recursive: true, force: true })
  else if (r < 2 / 3) {
    fs.chmodSync(file, 0o644)
    fs.truncateSync(file, 1)
  } else fs.rmSync(file, { force: true })
  return hash
}

/**
 * Runs an edit sequence; returns the list of oracle violations (empty for a correct build system).
 * With `faults`, an artifact of the incremental store is damaged before every round after the first.
 */
const checkSequence = async (seed: number, rebuilder?: Rebuilder, stopAtFirst = false, faults = false): Promise<Array<string>> => {
  const rand = rng(seed)
  const faultRand = rng(seed * 7919)
  const keyOutputs = new Map<string, string>() // simulated key -> artifact the incremental store holds for it
  const p = tempProject("anneal-oracle-")
  const nodes = randomDag(rand, 6 + Math.floor(rand() * 6))
  for (let k = 0; k < SOURCES; k++) p.write(`src${k}.txt`, `source ${k} v0`)
  const violations: Array<string> = []
  const built = new Set<string>() // simulated keys built by earlier rounds in the incremental store
  for (let round = 0; round < 6 && !(stopAtFirst && violations.length > 0); round++) {
    if (round > 0) {
      const r = rand()
      if (r < 0.4) {
        const n = nodes[Math.floor(rand() * nodes.length)]!
        n.salt = Math.floor(rand() * 6)
      } else if (r < 0.8) {
        const k = Math.floor(rand() * SOURCES)
        p.write(`src${k}.txt`, `source ${k} v${round}-${Math.floor(rand() * 1000)}`)
      } else {
        // touch without a content change: nothing may rerun because of it
        const f = p.file(`src${Math.floor(rand() * SOURCES)}.txt`)
        fs.utimesSync(f, new Date(), new Date(Date.now() + 5000))
      }
    }
    if (faults && round > 0) {
      const damaged = injectFault(faultRand, p.store)
      // a damaged artifact's keys must be rebuilt: that is not a minimality violation
      for (const [key, out] of keyOutputs) if (out === damaged) built.delete(key)
    }
    p.write("recipe.ts", recipeSource(nodes))
    const sourcesBefore = Array.from({ length: SOURCES }, (_, k) => hashFile(p.file(`src${k}.txt`)))
    const inc = await build(p, p.store, rebuilder)
    const scratch = await build(p, path.join(p.dir, `scratch-${round}`))
    const sourcesAfter = Array.from({ length: SOURCES }, (_, k) => hashFile(p.file(`src${k}.txt`)))
    if (sourcesAfter.join() !== sourcesBefore.join()) violations.push(`round ${round}: a source changed during the build`)
    const ran = new Set(inc.events.filter((e) => e.event === "step" && e.status === "ran").map((e) => (e as { step: string }).step))
    const model = simulate(nodes, Array.from({ length: SOURCES }, (_, k) => p.read(`src${k}.txt`)))
    // minimality: a key built in an earlier round is restored, never rebuilt; a new key is built (by
    // at least one step: two steps that share a new key may be built once and the other restored)
    const newKeys = new Map<string, Array<string>>()
    for (const n of nodes) {
      const { key } = model.get(n.id)!
      if (built.has(key)) {
        if (ran.has(n.id)) violations.push(`round ${round}: ${n.id} ran again, but its key was built in an earlier round`)
      } else newKeys.set(key, [...(newKeys.get(key) ?? []), n.id])
    }
    for (const [key, ids] of newKeys) {
      if (!ids.some((id) => ran.has(id))) violations.push(`round ${round}: ${ids.join(", ")} never built, but its key is new`)
      built.add(key)
    }
    for (const n of nodes) {
      const out = inc.summary.outputs.get(n.id)
      if (out !== undefined) keyOutputs.set(model.get(n.id)!.key, out)
    }
    for (const n of nodes) {
      const a = inc.summary.outputs.get(n.id)
      const b = scratch.summary.outputs.get(n.id)
      if (a !== b) violations.push(`round ${round}: ${n.id} is ${a?.slice(0, 8)} but a clean build gives ${b?.slice(0, 8)}`)
      // the name is not enough: the artifact the run handed over must hold that content
      const dir = a === undefined ? undefined : path.join(p.store, "artifacts", a)
      const held = dir !== undefined && fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? hashTree(dir).hash : "nothing"
      if (a !== undefined && held !== a) violations.push(`round ${round}: ${n.id}'s artifact ${a.slice(0, 8)} holds ${held.slice(0, 8)}`)
    }
  }
  return violations
}

/** Wrong on purpose: reuses a step's last output whenever its params match, ignoring its inputs. */
const ignoresInputs: Rebuilder = (q) => {
  const prev = q.record === undefined ? undefined : (JSON.parse(q.record.trace) as { params: unknown })
  if (q.record !== undefined && JSON.stringify(prev?.params) === JSON.stringify(q.trace.params) && q.present(q.record.output)) {
    return { action: "cached", output: q.record.output, seconds: 0, restored: false, reasons: [] }
  }
  return { action: "run", reasons: ["changed"] }
}

/** Wrong on purpose: restores any key built before without asking the store whether its copy is intact. */
const trustsTheStore: Rebuilder = (q) =>
  !q.forced && q.result !== undefined
    ? { action: "cached", output: q.result.output, seconds: 0, restored: true, reasons: [] }
    : { action: "run", reasons: ["changed"] }

/** Wrong on purpose: correct outputs, but every step reruns every time (not minimal). */
const alwaysReruns: Rebuilder = () => ({ action: "run", reasons: ["always"] })

describe("oracle: incremental builds equal clean builds", () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`random DAG and edits, seed ${seed}`, async () => {
      expect(await checkSequence(seed)).toEqual([])
    })
  }

  for (const seed of [5, 6]) {
    it(`random DAG and edits with store faults between runs (deleted, truncated, half-deleted artifacts), seed ${seed}`, async () => {
      expect(await checkSequence(seed, undefined, false, true)).toEqual([])
    })
  }

  it("catches a rebuilder that ignores input hashes", async () => {
    const found = (await Promise.all([1, 2].map((seed) => checkSequence(seed, ignoresInputs, true)))).flat()
    expect(found.length).toBeGreaterThan(0)
    expect(found.some((v) => v.includes("clean build gives"))).toBe(true)
  })

  it("catches a rebuilder that restores damaged artifacts (store faults)", async () => {
    const found = (await Promise.all([5, 6].map((seed) => checkSequence(seed, trustsTheStore, true, true)))).flat()
    expect(found.length).toBeGreaterThan(0)
    expect(found.some((v) => v.includes("holds") || v.includes("clean build gives"))).toBe(true)
  })

  it("catches a rebuilder that always reruns (correct, not minimal)", async () => {
    const found = await checkSequence(1, alwaysReruns, true)
    expect(found.length).toBeGreaterThan(0)
    expect(found.every((v) => v.includes("ran again, but its key was built in an earlier round"))).toBe(true)
  })
})
