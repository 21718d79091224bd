/**
 * generate with the transformers backend on the tiny fixture Llama (CPU, fp32): fixed seeds give the same
 * rows, a changed seed topic regenerates only its own request, a kill -9 then rerun generates only what
 * is missing, a token budget stops cleanly, and bad setups fail before any model loads.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { generate } from "../../../steps/generate/index.ts"
import { makeFixtures, runWorker, tempDir } from "../train/helpers.ts"

let fx: string
beforeAll(async () => {
  fx = await makeFixtures()
}, 600_000)

const rowsOf = (output: string): Array<Record<string, any>> =>
  fs.readFileSync(path.join(output, "data.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
const formatOf = (output: string): string => JSON.parse(fs.readFileSync(path.join(output, "dataset.json"), "utf8")).format

const textbook = (topics: ReadonlyArray<string>, extra: Record<string, unknown> = {}) => ({
  mode: "textbook", topics, template: "Lesson on {topic} for {audience}, as {style}: the",
  temperature: 1.0, maxNewTokens: 12, ...extra
})

it("textbook: fixed seeds give the same rows; a kill -9 then rerun generates only what is missing; one changed topic regenerates one request", async () => {
  const model = path.join(fx, "base")
  const cache = tempDir("anneal-generate-cache-")
  const topics = ["apple", "sky", "grass", "banana", "coal", "snow", "red", "blue"]
  const fresh = await runWorker(generate, { inputs: { model }, params: textbook(topics, { requestCache: false, maxNewTokens: 24 }) })
  expect(fresh.error).toBeUndefined()
  expect(fresh.exitCode).toBe(0)
  expect(formatOf(fresh.output)).toBe("text")
  expect(fresh.metrics.requests_generated).toBe(topics.length)
  expect(new Set(rowsOf(fresh.output).map((r) => r.text)).size).toBe(topics.length)

  const resumeDir = path.join(tempDir("anneal-generate-resume-"), "resume")
  let seen = 0
  const killed = await runWorker(generate, {
    inputs: { model }, params: textbook(topics, { requestCacheDir: cache, maxNewTokens: 24 }), resumeDir,
    onLine: (line, child) => {
      if (line.type === "progress" && line.unit === "requests" && ++seen === 3) child.kill("SIGKILL")
    }
  })
  expect(killed.signal).toBe("SIGKILL")
  const rerun = await runWorker(generate, { inputs: { model }, params: textbook(topics, { requestCacheDir: cache, maxNewTokens: 24 }), resumeDir })
  expect(rerun.error).toBeUndefined()
  expect(rerun.exitCode).toBe(0)
  const resumed = Number(rerun.metrics.requests_resumed)
  expect(resumed).toBeGreaterThanOrEqual(3)
  expect(resumed).toBeLessThan(topics.length)
  expect(rerun.metrics.requests_generated).toBe(topics.length - resumed)
  // same seeds, same rows: the interrupted-and-resumed run equals the uninterrupted one
  expect(rowsOf(rerun.output)).toEqual(rowsOf(fresh.output))

  // another step key (one topic changed; keepPrompt, which changes rows, not requests), the same request
  // cache: only the changed topic is generated, and the rows start with their prompts
  const changed = ["apple", "sky", "grass", "banana", "coal", "snow", "red", "green"]
  const edit = await runWorker(generate, { inputs: { model }, params: textbook(changed, { requestCacheDir: cache, maxNewTokens: 24, keepPrompt: true }) })
  expect(edit.exitCode).toBe(0)
  expect(edit.metrics.requests_generated).toBe(1)
  expect(edit.metrics.requests_cached).toBe(topics.length - 1)
  const edited = rowsOf(edit.output)
  rowsOf(fresh.output).forEach((row, i) => {
    expect(edited[i]!.text.startsWith(`Lesson on ${changed[i]} for `)).toBe(true)
    if (i < 7) expect(edited[i]!.text.endsWith(row.text)).toBe(true)
  })
}, 300_000)

it("preferences ranked by a rule give {prompt, chosen, rejected}; self-instruct under a maxTokens budget stops cleanly and says so", async () => {
  const model = path.join(fx, "base")
  const prefs = await runWorker(generate, {
    inputs: { model, data: path.join(fx, "instructions") },
    params: { mode: "preferences", rank: "longer", samples: 3, maxNewTokens: 12, temperature: 1.2, requestCache: false }
  })
  expect(prefs.error).toBeUndefined()
  expect(formatOf(prefs.output)).toBe("preference")
  const rows = rowsOf(prefs.output)
  expect(rows.length).toBeGreaterThan(0)
  for (const r of rows) expect(r.chosen.length).toBeGreaterThan(r.rejected.length)

  // self-instruct: 30 new tasks asked for, each then answered; the budget stops it after a few
  const budget = await runWorker(generate, {
    inputs: { model, data: path.join(fx, "instructions") },
    params: { mode: "instructions", method: "self-instruct", count: 30, maxNewTokens: 8, maxTokens: 20, requestCache: false }
  })
  expect(budget.error).toBeUndefined()
  expect(budget.exitCode).toBe(0)
  expect(budget.metrics.budget_exhausted).toBe(1)
  expect(Number(budget.metrics.items)).toBeLessThan(30)
  expect(Number(budget.metrics.requests_generated)).toBeLessThan(60)
  expect(budget.lines.some((l) => l.type === "log" && /maxTokens budget of 20 .* stopped/.test(l.message))).toBe(true)
  expect(formatOf(budget.output)).toBe("prompt-completion")
  for (const r of rowsOf(budget.output)) expect(r.prompt.length * r.completion.length).toBeGreaterThan(0)
}, 300_000)

it("bad setups fail with one clear line before a model loads or a request is sent", async () => {
  const missingKey = await runWorker(generate, {
    inputs: { data: path.join(fx, "instructions") },
    params: { mode: "responses", backend: "openai", baseUrl: "http://127.0.0.1:9/v1", apiModel: "m", apiKeyEnv: "ANNEAL_TEST_NO_SUCH_KEY" }
  })
  expect(missingKey.exitCode).toBe(2)
  expect(missingKey.error).toMatch(/apiKeyEnv names the environment variable ANNEAL_TEST_NO_SUCH_KEY, which is not set/)
  expect(missingKey.lines.some((l) => l.type === "metric")).toBe(false)
  // the same at recipe load, through checkParams
  const problem = generate.definition.checkParams!(
    { backend: "openai", baseUrl: "http://x/v1", apiModel: "m", apiKeyEnv: "ANNEAL_TEST_NO_SUCH_KEY", mode: "textbook", samples: 2 } as any,
    { model: 0, data: 0 }
  )
  expect(problem).toEqual({ param: "apiKeyEnv", message: expect.stringMatching(/ANNEAL_TEST_NO_SUCH_KEY .* is not set/) })

  const badTemplate = await runWorker(generate, { inputs: { model: path.join(fx, "base") }, params: textbook(["apple"], { template: "About {subject}" }) })
  expect(badTemplate.exitCode).toBe(2)
  expect(badTemplate.error).toMatch(/param template: unknown placeholder \{subject\}/)

  const vllm = await runWorker(generate, { inputs: { model: path.join(fx, "base") }, params: textbook(["apple"], { backend: "vllm", requestCache: false }) })
  expect(vllm.exitCode).not.toBe(0)
  expect(vllm.stderr + (vllm.error ?? "")).toMatch(/backend vllm needs (the vllm package|a GPU)/)
}, 300_000)
