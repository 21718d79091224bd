/**
 * Warm Python workers (engine/warm-workers.ts): every training kind gives byte-identical artifacts when
 * forked from the warm process and when started cold; a warm step interrupted mid-training leaves no
 * process behind and resumes from its checkpoint; a step that throws or scribbles on shared module state
 * does not change the next one; CUDA_VISIBLE_DEVICES and the environment are each step's own.
 * Each warm step is checked to have really been forked (the pool counts forks), so a silent cold
 * fallback cannot pass for warm.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Cause, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeLocalExecutor } from "../../../engine/executors/local.ts"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import type { StepSpec } from "../../../engine/spec.ts"
import { sharedWarmWorkers } from "../../../engine/warm-workers.ts"
import { dpo, dpoLora, evaluate, pretrain, sft, sftLora, tokenizer } from "../../../steps/train/index.ts"
import { progressOf, runSpec, startSpec, workerSpec } from "../../executors/specs.ts"
import { makeFixtures, tempDir } from "./helpers.ts"
import { trainingSpec } from "./warm-specs.ts"

const warm = sharedWarmWorkers()
const warmExecutor = makeLocalExecutor({ warm: true })
const coldExecutor = makeLocalExecutor({ warm: false })
let fx: string

beforeAll(async () => {
  fx = await makeFixtures()
  expect(await warm.warmUp()).toBe(true)
}, 900_000)

afterAll(async () => {
  const pid = warm.pid()
  await warm.close()
  if (pid !== undefined) expect(alive(pid)).toBe(false)
})

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Processes whose parent is `pid` (the warm process's forked steps). */
const childrenOf = (pid: number): Array<number> =>
  fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid ? [Number(d)] : []
    } catch {
      return []
    }
  })

const files = (dir: string): Record<string, Buffer> =>
  Object.fromEntries(fs.readdirSync(dir, { recursive: true }).map(String).sort()
    .filter((f) => fs.statSync(path.join(dir, f)).isFile()).map((f) => [f, fs.readFileSync(path.join(dir, f))]))

/** Runs the step cold, then warm (checking it was forked), and returns both outputs' files. */
const coldAndWarm = async (step: { readonly definition: unknown }, inputs: Record<string, unknown>, params: Record<string, unknown>) => {
  const cold = trainingSpec(step, inputs, params)
  const c = await runSpec(coldExecutor, cold)
  expect(c.error?.message).toBeUndefined()
  const forks = warm.forks()
  const hot = trainingSpec(step, inputs, params)
  const w = await runSpec(warmExecutor, hot)
  expect(w.error?.message).toBeUndefined()
  expect(warm.forks()).toBe(forks + 1)
  const [a, b] = [files(cold.output), files(hot.output)]
  expect(Object.keys(a).length).toBeGreaterThan(0)
  expect(Object.keys(b)).toEqual(Object.keys(a))
  return { cold: a, warm: b, warmEvents: w.events }
}

const expectIdentical = (r: { cold: Record<string, Buffer>; warm: Record<string, Buffer> }) => {
  for (const [name, bytes] of Object.entries(r.cold)) expect(r.warm[name]!.equals(bytes), name).toBe(true)
}

describe("warm and cold workers give byte-identical artifacts", () => {
  const tiny = { maxSteps: 3, microBatchSize: 4 }
  const model = () => ({ model: path.join(fx, "base") })

  it("tokenizer", async () => {
    expectIdentical(await coldAndWarm(tokenizer, { data: path.join(fx, "text") }, { vocabSize: 300 }))
  }, 900_000)

  it("pretrain, reporting its phases", async () => {
    const r = await coldAndWarm(pretrain, { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") },
      { ...tiny, seqLen: 32, hiddenSize: 32, intermediateSize: 64, seed: 3 })
    expectIdentical(r)
    const phases = progressOf(r.warmEvents).flatMap((p) => (p.phase !== undefined ? [p.phase] : []))
    expect(phases).toEqual(["loading torch", "tokenizing", "loading model", "training", "saving"])
  }, 900_000)

  it("sft and sft-lora", async () => {
    const data = { ...model(), data: path.join(fx, "instructions") }
    expectIdentical(await coldAndWarm(sft, data, tiny))
    expectIdentical(await coldAndWarm(sftLora, data, tiny))
  }, 900_000)

  it("dpo and dpo-lora", async () => {
    const data = { ...model(), data: path.join(fx, "preferences") }
    expectIdentical(await coldAndWarm(dpo, data, { maxSteps: 2, microBatchSize: 4 }))
    expectIdentical(await coldAndWarm(dpoLora, data, { maxSteps: 2, microBatchSize: 4 }))
  }, 900_000)

  it("eval (the same report)", async () => {
    const r = await coldAndWarm(evaluate, { ...model(), benchmarks: [path.join(fx, "mc")] }, { localTaskNames: ["colors"] })
    expect(JSON.parse(r.warm["report.json"]!.toString())).toEqual(JSON.parse(r.cold["report.json"]!.toString()))
  }, 900_000)
})

describe("a warm step", () => {
  it("interrupted mid-training leaves no process behind, and resumes from its checkpoint on rerun", async () => {
    const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }
    const params = { maxSteps: 40, saveSteps: 2, seqLen: 32, microBatchSize: 4, hiddenSize: 32, intermediateSize: 64 }
    const resumeDir = tempDir("anneal-warm-resume-")
    const forks = warm.forks()
    const running = startSpec(warmExecutor, trainingSpec(pretrain, inputs, params, resumeDir))
    try {
      await waitUntil(() => fs.readdirSync(resumeDir).some((d) => fs.existsSync(path.join(resumeDir, d, "trainer_state.json"))))
    } catch (e) {
      await running.interrupt() // no checkpoint in time: stop the training before failing
      throw e
    }
    expect(warm.forks()).toBe(forks + 1)
    const server = warm.pid()!
    expect(childrenOf(server)).toHaveLength(1)
    await running.interrupt()
    const exit = await running.done
    expect(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)).toBe(true)
    // the forked step is gone (and reaped) by the time the executor returned; the warm process is not
    expect(childrenOf(server)).toEqual([])
    expect(alive(server)).toBe(true)

    const again = await runSpec(warmExecutor, trainingSpec(pretrain, inputs, params, resumeDir))
    expect(again.error?.message).toBeUndefined()
    expect(warm.forks()).toBe(forks + 2)
    expect(again.events.some((e) => e.event === "log" && /resuming from .*checkpoint-/.test(e.message))).toBe(true)
    const firstStep = progressOf(again.events).find((p) => p.loss !== undefined)!.current
    expect(firstStep).toBeGreaterThan(2)
  }, 900_000)

  it("that throws, or changes state it shares with the warm process, does not change the next step", async () => {
    const dir = tempDir("anneal-warm-poison-")
    const script = path.join(dir, "poison.py")
    fs.writeFileSync(script, [
      "import os, sys, torch, anneal_worker.protocol as protocol",
      "mode = sys.argv[2]",
      "if mode == 'poison':",
      "    torch.set_default_dtype(torch.float64)",
      "    protocol.WHO_POISONED = True",
      "    os.environ['POISONED'] = '1'",
      "    raise RuntimeError('poisoned on purpose')",
      "print(f'{torch.get_default_dtype()} {hasattr(protocol, \"WHO_POISONED\")} {os.environ.get(\"POISONED\")} {torch.randn(2).tolist()}')",
      "print(f'step={os.environ.get(\"ANNEAL_STEP\")}')",
      ""
    ].join("\n"))
    const store = tempDir("anneal-warm-store-")
    for (const d of ["staging", "resume", "logs"]) fs.mkdirSync(path.join(store, d))
    const scriptSpec = (mode: string): StepSpec => {
      const spec = workerSpec(store, { step: mode })
      return { ...spec, implementation: { ...spec.implementation, argv: [pythonExecutable(), script, spec.logPath, mode], env: { ...pythonEnvVars() } } } as StepSpec
    }
    const forks = warm.forks()
    const server = warm.pid()
    const clean = scriptSpec("clean")
    expect((await runSpec(warmExecutor, clean)).error).toBeUndefined()
    const poisoned = await runSpec(warmExecutor, scriptSpec("poison"))
    expect(poisoned.error?.message).toMatch(/exit code 1: RuntimeError: poisoned on purpose/)
    const after = scriptSpec("after")
    expect((await runSpec(warmExecutor, after)).error).toBeUndefined()
    expect(warm.forks()).toBe(forks + 3)
    expect(warm.pid()).toBe(server)
    const printed = (spec: StepSpec) => fs.readFileSync(spec.logPath, "utf8").split("\n").find((l) => l.startsWith("torch."))
    // a fresh interpreter's state: float32, no attribute, no variable, and (as two cold processes
    // would) torch random numbers of its own, not the ones every fork of the warm process would share
    expect(printed(after)).toMatch(/^torch\.float32 False None \[/)
    const randoms = (spec: StepSpec) => printed(spec)!.replace(/^.*\[/, "[")
    expect(randoms(after)).not.toBe(randoms(clean))
    expect(fs.readFileSync(after.logPath, "utf8")).toContain("step=after")
    const traceback = fs.readFileSync(path.join(store, "logs", fs.readdirSync(path.join(store, "logs")).find((f) => f.startsWith("poison") && f.endsWith(".log"))!), "utf8")
    // the traceback starts in the script, as Python's would, not in the warm process's runner
    expect(traceback).toContain(`File "${script}"`)
    expect(traceback).not.toContain("warm_child.py")
  }, 300_000)

  it("ends as the cold command ends: its exit code, or death by its signal (SIGKILL, as the OOM killer sends)", async () => {
    const dir = tempDir("anneal-warm-exit-")
    const script = path.join(dir, "end.py")
    fs.writeFileSync(script, "import os, signal, sys\nif sys.argv[2] == 'kill': os.kill(os.getpid(), signal.SIGKILL)\nsys.exit(int(sys.argv[2]))\n")
    const store = tempDir("anneal-warm-store-")
    for (const d of ["staging", "resume", "logs"]) fs.mkdirSync(path.join(store, d))
    const ending = (how: string): StepSpec => {
      const spec = workerSpec(store, { step: `end-${how}` })
      return { ...spec, implementation: { ...spec.implementation, argv: [pythonExecutable(), script, spec.logPath, how] } } as StepSpec
    }
    const forks = warm.forks()
    for (const how of ["kill", "3"]) {
      const [w, c] = [await runSpec(warmExecutor, ending(how)), await runSpec(coldExecutor, ending(how))]
      expect(w.error?.message.split(":")[0]).toBe(how === "kill" ? "killed by SIGKILL" : "exit code 3")
      expect(w.error?.message.split(":")[0]).toBe(c.error?.message.split(":")[0])
    }
    expect(warm.forks()).toBe(forks + 2)
  }, 300_000)

  it("runs as long as it needs: past the warm process's 10 s limit on reading a request", async () => {
    const store = tempDir("anneal-warm-store-")
    for (const d of ["staging", "resume", "logs"]) fs.mkdirSync(path.join(store, d))
    const forks = warm.forks()
    const { error, result } = await runSpec(warmExecutor, workerSpec(store, { step: "long", params: { steps: 12, delay: 1 } }))
    expect(error?.message).toBeUndefined()
    expect(result?.metrics.final_loss).toBeCloseTo(2 / 12)
    expect(warm.forks()).toBe(forks + 1)
  }, 300_000)

  it("gets its own CUDA_VISIBLE_DEVICES and environment when two run at once", async () => {
    const store = tempDir("anneal-warm-store-")
    for (const d of ["staging", "resume", "logs"]) fs.mkdirSync(path.join(store, d))
    const forks = warm.forks()
    const [one, none] = await Promise.all([
      runSpec(warmExecutor, workerSpec(store, { step: "gpu-step", params: { steps: 1 }, gpus: 1 })),
      runSpec(warmExecutor, workerSpec(store, { step: "cpu-step", params: { steps: 1 }, gpus: 0 }))
    ])
    expect(warm.forks()).toBe(forks + 2)
    expect(one.result?.metrics.visible_gpus).toBe(1)
    expect(none.result?.metrics.visible_gpus).toBe(0)
  }, 300_000)
})

const waitUntil = async (ready: () => boolean, timeoutMs = 600_000) => {
  const until = Date.now() + timeoutMs
  while (!ready()) {
    if (Date.now() > until) throw new Error("timed out waiting")
    await new Promise((ok) => setTimeout(ok, 200))
  }
}
