/**
 * generate with backend llama-server: the step serves a GGUF (the tiny fixture Llama, converted by
 * llama.cpp's own converter, in a directory as `quantize` writes it) with llama.cpp's server, which it
 * starts on loopback and stops. A kill -9 of the worker alone takes the server with it, and the rerun
 * resumes; a GGUF the server cannot load and a directory without one fail with one clear line.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadRecipe } from "../../../engine/load.ts"
import { projectRoot } from "../../../engine/python.ts"
import { generate } from "../../../steps/generate/index.ts"
import { runWorker, tempDir } from "../train/helpers.ts"
import { fixtureGguf } from "./gguf.ts"

const llamaCpp = await import("../../../engine/components/llama-cpp.ts").then((m) => m.findLlamaCpp()).catch(() => undefined)

/** pids of the llama-server processes serving `gguf` (from /proc: the test did not start them itself) */
const serversOf = (gguf: string): Array<number> =>
  fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0")
      return argv[0]?.endsWith("llama-server") && argv.includes(gguf) ? [Number(d)] : []
    } catch {
      return []
    }
  })

const until = async (what: string, ok: () => boolean, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe.skipIf(llamaCpp === undefined)("generate with backend llama-server", () => {
  let model: string
  let gguf: string
  beforeAll(async () => {
    // a link of the shared fixture under a path of this file's own, so only this file's servers match it
    model = tempDir("anneal-generate-served-")
    gguf = path.join(model, "model.gguf")
    fs.linkSync(path.join(await fixtureGguf(llamaCpp!.dir), "model.gguf"), gguf)
  }, 600_000)
  afterAll(() => {
    // a server this file's steps left behind (only if a test failed): stop it
    for (const pid of gguf ? serversOf(gguf) : []) process.kill(pid, "SIGKILL")
  })

  const params = (extra: Record<string, unknown> = {}) => ({
    backend: "llama-server", api: "completions", topics: ["the sky", "an apple", "grass", "snow"], perTopic: 1,
    template: "{topic} for {audience} as {style}:", maxNewTokens: 8, concurrency: 1, serverThreads: 1, requestCache: false, ...extra
  })

  it("serves the GGUF, answers every request, stops the server, and a killed worker takes its server with it", async () => {
    const sha = createHash("sha256").update(fs.readFileSync(gguf)).digest("hex")
    const run = await runWorker(generate, { inputs: { model }, params: params() })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    expect(run.metrics).toMatchObject({ requests_generated: 4, endpoint_requests: 4, server_started: 1 })
    const teacher = JSON.parse(fs.readFileSync(path.join(run.output, "teacher.json"), "utf8"))
    expect(teacher.identity).toMatchObject({ type: "llama-server", gguf: sha })
    expect(run.lines.some((l) => l.type === "log" && l.message.includes(`served by llama-server as model gguf-${sha.slice(0, 12)}`))).toBe(true)
    expect(serversOf(gguf)).toEqual([]) // stopped with the step

    // kill -9 the worker alone (not its process group) once the server answers: the server dies too
    const resumeDir = path.join(tempDir("anneal-generate-served-resume-"), "resume")
    let server: Array<number> = []
    const killed = await runWorker(generate, {
      inputs: { model }, resumeDir, params: params({ maxNewTokens: 48 }),
      onLine: (line, child) => {
        if (line.type === "progress" && line.unit === "requests" && line.current >= 1 && server.length === 0) {
          server = serversOf(gguf)
          child.kill("SIGKILL")
        }
      }
    })
    expect(killed.signal).toBe("SIGKILL")
    expect(server, JSON.stringify(killed.lines.slice(-4))).toHaveLength(1)
    await until("the orphaned llama-server to exit", () => serversOf(gguf).length === 0)

    const rerun = await runWorker(generate, { inputs: { model }, resumeDir, params: params({ maxNewTokens: 48 }) })
    expect(rerun.error).toBeUndefined()
    expect(Number(rerun.metrics.requests_resumed)).toBeGreaterThanOrEqual(1)
    expect(Number(rerun.metrics.requests_resumed) + Number(rerun.metrics.requests_generated)).toBe(4)
  }, 300_000)

  it("a file the server cannot load, or a directory without a GGUF, fails with one line", async () => {
    const bad = tempDir("anneal-generate-bad-gguf-")
    fs.writeFileSync(path.join(bad, "model.gguf"), Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(64, 7)]))
    const broken = await runWorker(generate, { inputs: { model: bad }, params: params() })
    expect(broken.exitCode).toBe(1)
    expect(broken.error).toMatch(/llama-server exited \(code \d+\) before it was ready on .*model\.gguf/)
    expect(serversOf(path.join(bad, "model.gguf"))).toEqual([])

    const empty = tempDir("anneal-generate-no-gguf-")
    fs.writeFileSync(path.join(empty, "config.json"), "{}")
    const missing = await runWorker(generate, { inputs: { model: empty }, params: params() })
    expect(missing.exitCode).toBe(2)
    expect(missing.error).toMatch(/backend llama-server needs input 'model' to hold one GGUF file .* has no \.gguf file/)
  }, 120_000)
})

describe("backend llama-server in a recipe", () => {
  it("without input 'model', or with a baseUrl as well, fails when the recipe loads", async () => {
    const dir = tempDir("anneal-generate-served-recipe-")
    const write = (name: string, call: string): string => {
      const file = path.join(dir, `${name}.ts`)
      fs.writeFileSync(file, [
        `import { generateTextbook, recipe, source } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}`,
        `export default recipe("g", () => { const model = source.model(${JSON.stringify(dir)}); ${call} })`
      ].join("\n"))
      return file
    }
    await expect(loadRecipe(write("no-model", `generateTextbook({}, { backend: "llama-server", topics: ["a"] })`)))
      .rejects.toThrow(/param backend: backend llama-server needs input 'model' \(the teacher\)/)
    await expect(loadRecipe(write("both", `generateTextbook({ model }, { backend: "llama-server", baseUrl: "http://127.0.0.1:1/v1", topics: ["a"] })`)))
      .rejects.toThrow(/param baseUrl: backend llama-server serves input 'model' itself: leave baseUrl empty/)
  })
})
