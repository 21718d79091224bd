/**
 * generate against an OpenAI-compatible endpoint: llama.cpp's llama-server (a real server, on a GGUF of
 * the tiny fixture Llama made by llama.cpp's own converter), behind a small real HTTP proxy in this file
 * that injects 429s (with Retry-After), 500s and hangs. Retried faults heal; faults that persist fail
 * the step with one clear line; the API key reaches the server and nothing else.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { generate } from "../../../steps/generate/index.ts"
import { cli, tempProject } from "../../helpers/project.ts"
import { runWorker, tempDir, type WorkerRun } from "../train/helpers.ts"
import { fixtureGguf } from "./gguf.ts"

type Fault = "429" | "500" | "hang" | "forward"

/** A proxy that answers each request with the next planned fault, then forwards to `upstream` (if any). */
const startProxy = async (upstream: string | undefined) => {
  const state = { plan: [] as Array<Fault>, always: undefined as Fault | undefined, seen: 0, auth: [] as Array<string> }
  const hanging = new Set<http.ServerResponse>()
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", async () => {
      state.seen++
      state.auth.push(String(req.headers.authorization ?? ""))
      const fault = state.plan.shift() ?? state.always ?? "forward"
      if (fault === "429") {
        res.writeHead(429, { "Retry-After": "1", "Content-Type": "application/json" }).end('{"error":"rate limited"}')
      } else if (fault === "500") {
        res.writeHead(500, { "Content-Type": "application/json" }).end('{"error":"boom"}')
      } else if (fault === "hang") {
        hanging.add(res) // never answered: the client's timeout must fire
      } else if (upstream === undefined) {
        res.writeHead(502).end("no upstream")
      } else {
        const r = await fetch(upstream + req.url, { method: "POST", body: Buffer.concat(chunks), headers: { "Content-Type": "application/json" } })
        res.writeHead(r.status, { "Content-Type": "application/json" }).end(Buffer.from(await r.arrayBuffer()))
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
  const close = () =>
    new Promise<void>((r) => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      server.close(() => r())
    })
  return { url, state, close }
}

const rowsOf = (output: string): Array<Record<string, any>> =>
  fs.readFileSync(path.join(output, "data.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))

const filesText = (dir: string): string =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => fs.readFileSync(path.join(e.parentPath, e.name), "utf8"))
    .join("\n")

let prompts: string
beforeAll(() => {
  prompts = tempDir("anneal-generate-prompts-")
  const rows = ["the sky is", "an apple is", "grass is", "snow is", "coal is", "a banana is"].map((p) => ({ prompt: p, completion: "" }))
  fs.writeFileSync(path.join(prompts, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
  fs.writeFileSync(path.join(prompts, "dataset.json"), JSON.stringify({ format: "prompt-completion", rows: rows.length }))
})

const endpointParams = (url: string, extra: Record<string, unknown> = {}) => ({
  mode: "responses", backend: "openai", baseUrl: url, apiModel: "tiny", api: "completions", maxNewTokens: 12,
  temperature: 0.8, concurrency: 2, maxRetries: 4, timeoutSeconds: 2, retryBaseSeconds: 0.05, requestCache: false, ...extra
})

describe("an endpoint whose faults persist", () => {
  let proxy: Awaited<ReturnType<typeof startProxy>>
  beforeAll(async () => {
    proxy = await startProxy(undefined)
  })
  afterAll(async () => {
    await proxy.close()
  })

  const failing = async (fault: Fault, extra: Record<string, unknown> = {}): Promise<WorkerRun> => {
    proxy.state.always = fault
    proxy.state.seen = 0
    const run = await runWorker(generate, { inputs: { data: prompts }, params: endpointParams(proxy.url, { concurrency: 1, maxRetries: 2, ...extra }) })
    proxy.state.always = undefined
    return run
  }

  it("is retried with backoff, then fails the step naming the endpoint, the fault and the attempts", async () => {
    const started = Date.now()
    const limited = await failing("429")
    expect(limited.exitCode).toBe(1)
    expect(limited.error).toMatch(/\/v1\/completions: HTTP 429 \(rate limited\); gave up after 3 attempts \(maxRetries 2\)/)
    expect(proxy.state.seen).toBe(3)
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000) // two waits of Retry-After: 1
    expect(limited.lines.filter((l) => l.type === "log" && /retry \d\/2/.test(l.message))).toHaveLength(2)

    const broken = await failing("500")
    expect(broken.exitCode).toBe(1)
    expect(broken.error).toMatch(/HTTP 500 Internal Server Error; gave up after 3 attempts/)

    const slow = await failing("hang", { timeoutSeconds: 0.5, maxRetries: 1 })
    expect(slow.exitCode).toBe(1)
    expect(slow.error).toMatch(/no answer within timeoutSeconds \(0\.5 s\); gave up after 2 attempts/)
  }, 120_000)

  it("sends the API key from the environment and writes it nowhere", async () => {
    const secret = "sk-anneal-test-3f9a1c"
    process.env.ANNEAL_TEST_API_KEY = secret
    try {
      proxy.state.auth = []
      const dir = tempDir("anneal-generate-key-")
      const run = await runWorker(generate, {
        inputs: { data: prompts }, resumeDir: path.join(dir, "resume"),
        params: endpointParams(proxy.url, { apiKeyEnv: "ANNEAL_TEST_API_KEY", maxRetries: 0, requestCacheDir: path.join(dir, "requests"), requestCache: true })
      })
      expect(run.exitCode).toBe(1) // no upstream behind the proxy: 502
      expect(proxy.state.auth[0]).toBe(`Bearer ${secret}`)
      const everything = JSON.stringify(run.lines) + run.stderr + filesText(dir)
      expect(everything).not.toContain(secret)
    } finally {
      delete process.env.ANNEAL_TEST_API_KEY
    }
  }, 60_000)
})

// llama.cpp is built by the project's setup (`anneal setup --with llama-cpp`; npm test does it)
const llamaCpp = await import("../../../engine/components/llama-cpp.ts").then((m) => m.findLlamaCpp()).catch(() => undefined)

describe.skipIf(llamaCpp === undefined)("llama.cpp's llama-server on a GGUF of the tiny Llama", () => {
  let server: { url: string; stop: () => Promise<void> } | undefined
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined
  beforeAll(async () => {
    const gguf = path.join(await fixtureGguf(llamaCpp!.dir), "model.gguf")
    const { startLlamaServer } = await import("../../../engine/components/llama-server.ts")
    server = await startLlamaServer({ model: gguf, ctxSize: 256, parallel: 1, alias: "tiny", threads: 1 })
    proxy = await startProxy(server.url)
  }, 600_000)
  afterAll(async () => {
    await proxy?.close()
    await server?.stop()
  })

  it("gives the same rows for fixed seeds, and heals 429, 500 and a hang by retrying", async () => {
    const direct = await runWorker(generate, { inputs: { data: prompts }, params: endpointParams(server!.url + "/v1") })
    expect(direct.error).toBeUndefined()
    expect(direct.exitCode).toBe(0)
    expect(direct.metrics.requests_generated).toBe(6)
    expect(direct.metrics.endpoint_requests).toBe(6)
    expect(Number(direct.metrics.generated_tokens)).toBeGreaterThan(0)
    const rows = rowsOf(direct.output)
    expect(rows.map((r) => r.prompt)).toEqual(["the sky is", "an apple is", "grass is", "snow is", "coal is", "a banana is"].slice(0, rows.length))

    proxy!.state.plan = ["429", "500", "hang"]
    const healed = await runWorker(generate, { inputs: { data: prompts }, params: endpointParams(proxy!.url) })
    expect(healed.error).toBeUndefined()
    expect(healed.exitCode).toBe(0)
    expect(healed.metrics.endpoint_retries).toBe(3)
    expect(healed.metrics.endpoint_requests).toBe(9)
    expect(rowsOf(healed.output)).toEqual(rows)
  }, 300_000)

  it("chat completions work too, and through anneal run one changed topic regenerates one request", async () => {
    const chat = await runWorker(generate, { inputs: { data: prompts }, params: endpointParams(server!.url + "/v1", { api: "chat" }) })
    expect(chat.error).toBeUndefined()
    expect(chat.exitCode).toBe(0)
    expect(chat.metrics.requests_generated).toBe(6)

    const project = tempProject("anneal-generate-recipe-")
    project.write("recipe.ts", `
import { generateTextbook, recipe } from "anneal"
export default recipe("synthetic", () => {
  generateTextbook({}, {
    topics: process.env.TOPICS!.split(","), backend: "openai", baseUrl: process.env.BASE_URL!, apiModel: "tiny",
    api: "completions", maxNewTokens: 8, template: "{topic} for {audience} as {style}:"
  }, { id: "generate" })
})
`)
    const run = async (topics: string) => {
      const r = await cli(["run", "recipe.ts", "--json"], { cwd: project.dir, env: { TOPICS: topics, BASE_URL: server!.url + "/v1" } })
      expect(r.exitCode, r.stderr).toBe(0)
      return Object.fromEntries(r.events.filter((e: any) => e.event === "metric" && e.step === "generate").map((e: any) => [e.name, e.value]))
    }
    expect(await run("apple,sky,grass")).toMatchObject({ requests_generated: 3, requests_cached: 0 })
    expect(await run("apple,sky,snow")).toMatchObject({ requests_generated: 1, requests_cached: 2 })
    // the answers live in the store's request cache, outside the artifacts
    expect(fs.readdirSync(path.join(project.store, "requests")).length).toBeGreaterThan(0)
  }, 300_000)
})
