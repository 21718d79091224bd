/**
 * recipes/closed-loop.ts at toy size, through the CLI: a teacher pretrained in the recipe is quantized
 * to GGUF by llama.cpp's converter, served by llama.cpp's server that the generate step starts on
 * loopback, and asked for textbook sections; they are deduplicated and decontaminated, a student is
 * pretrained on them, and both are evaluated. Then: a rerun is fully cached; one changed seed topic asks
 * the server for that topic's section only; a forced rerun with every answer cached never starts the server.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import { projectRoot } from "../../engine/python.ts"
import { cli, ranSteps, stepEvents, tempProject } from "../helpers/project.ts"

// llama.cpp is built by the project's setup (`anneal setup --with llama-cpp`; npm test does it)
const llamaCpp = await import("../../engine/components/llama-cpp.ts").then((m) => m.findLlamaCpp()).catch(() => undefined)

const allSteps = [
  "corpus", "decontaminate", "dedup", "eval-student", "eval-teacher", "generate", "pretrain-student", "pretrain-teacher",
  "quantize", "quiz", "tokenizer"
]

describe.skipIf(llamaCpp === undefined)("recipes/closed-loop.ts at toy size", () => {
  const project = tempProject("anneal-closed-loop-")
  project.write("recipe.ts", `
import { recipe } from "anneal"
import { closedLoop } from ${JSON.stringify(path.join(projectRoot, "recipes", "closed-loop.ts"))}
export default recipe("closed-loop-tiny", () => {
  closedLoop({
    topics: process.env.TOPICS!.split(","), perTopic: 1, maxNewTokens: 24, teacherSteps: 12, studentSteps: 4, studentSeqLen: 32,
    corpusVariants: 1
  })
})
`)
  afterAll(() => fs.rmSync(project.dir, { recursive: true, force: true }))

  const run = async (topics: string, ...args: Array<string>) => {
    const r = await cli(["run", "recipe.ts", "--json", "--allow-cpu", ...args], { cwd: project.dir, env: { TOPICS: topics } })
    const failed = stepEvents(r.events).filter((e) => e.status === "failed").map((e) => `${e.step}: ${e.error}`)
    expect(r.exitCode, failed.join("\n") + r.stderr.slice(-3000)).toBe(0)
    return r.events
  }
  const metrics = (events: ReadonlyArray<EngineEvent>, step: string): Record<string, unknown> =>
    Object.fromEntries(events.filter((e: any) => e.event === "metric" && e.step === step).map((e: any) => [e.name, e.value]))
  const outputOf = (events: ReadonlyArray<EngineEvent>, step: string): string => {
    const e = stepEvents(events).find((s) => s.step === step)
    expect(e?.output, step).toBeTruthy()
    return path.join(project.store, "artifacts", e!.output!)
  }
  const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

  it("runs teacher -> GGUF -> llama-server -> generate -> dedup -> student -> eval, then reruns only what changed", async () => {
    const first = await run("photosynthesis,gravity,prime numbers")
    expect(ranSteps(first)).toEqual(allSteps)
    const gen = metrics(first, "generate")
    expect(gen).toMatchObject({ requests_generated: 3, requests_cached: 0, server_started: 1, endpoint_retries: 0 })
    expect(Number(gen.endpoint_requests)).toBe(3)
    expect(Number(gen.generated_tokens)).toBeGreaterThan(0)

    // the corpus came from the GGUF that quantize wrote, served by llama-server
    const gguf = path.join(outputOf(first, "quantize"), "model.gguf")
    expect(fs.readFileSync(gguf).subarray(0, 4).toString("latin1")).toBe("GGUF")
    const written = outputOf(first, "generate")
    const teacher = JSON.parse(fs.readFileSync(path.join(written, "teacher.json"), "utf8"))
    expect(teacher.identity).toMatchObject({ type: "llama-server", gguf: sha256(gguf), api: "completions" })
    const log = first.find((e: any) => e.event === "log" && e.step === "generate" && /served by llama-server as model gguf-/.test(e.message))
    expect(log, "generate names the GGUF it served").toBeDefined()
    const rows = fs.readFileSync(path.join(written, "data.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).text as string)
    expect(rows.map((t) => t.split(",")[0])).toEqual(["Chapter: photosynthesis", "Chapter: gravity", "Chapter: prime numbers"])
    expect(rows.every((t) => t.length > t.indexOf(" is") + 3)).toBe(true) // the teacher continued each opening

    // the student trained on them, and both models were scored on the quiz
    expect(Number(metrics(first, "pretrain-student").train_loss)).toBeGreaterThan(0)
    for (const id of ["eval-teacher", "eval-student"]) {
      const acc = Number(metrics(first, id)["textbook_quiz/acc"])
      expect(acc, id).toBeGreaterThanOrEqual(0)
      expect(acc, id).toBeLessThanOrEqual(1)
    }

    // a rerun is fully cached
    expect(ranSteps(await run("photosynthesis,gravity,prime numbers"))).toEqual([])

    // one changed topic: the server is asked for that topic's section only
    const changed = await run("photosynthesis,gravity,entropy", "generate")
    expect(ranSteps(changed)).toEqual(["generate"])
    expect(metrics(changed, "generate")).toMatchObject({ requests_generated: 1, requests_cached: 2, endpoint_requests: 1, server_started: 1 })

    // every answer in the request cache: the step reruns without starting the server
    const forced = await run("photosynthesis,gravity,prime numbers", "generate", "--force", "generate")
    expect(ranSteps(forced)).toEqual(["generate"])
    expect(metrics(forced, "generate")).toMatchObject({ requests_generated: 0, requests_cached: 3, server_started: 0 })
    expect(fs.readFileSync(path.join(outputOf(forced, "generate"), "data.jsonl"), "utf8"))
      .toBe(fs.readFileSync(path.join(written, "data.jsonl"), "utf8"))
  }, 600_000)
})
