/**
 * Distributed training on CPU: torchrun with gloo and 2 processes, as the local executor launches it.
 *
 * - A 2-process DDP run equals the 1-process run with the same global batch (2 x 2 sequences vs 1 x 4)
 *   up to fp32 reduction order: each optimizer step's gradient is the same mean, summed in another order
 *   (two partial sums all-reduced instead of one sum), so weights differ by rounding only. Tolerance:
 *   max |a - b| < 1e-4 on weights of magnitude ~0.1-1 after the run (measured: 2.8e-7 for pretrain,
 *   9.7e-8 for sft-lora); Adam moves a weight by about lr (3e-3, 1e-2 here) per step whatever the
 *   gradient, so a different batch split or order would differ by that much.
 * - Killing one rank mid-run fails the step (torchrun stops the other rank; no process is left), and
 *   the rerun resumes from the last checkpoint and still ends equal to the uninterrupted 1-process run.
 * - FSDP2 on CPU (gloo): the model is sharded (one checkpoint shard per rank), the result equals the
 *   1-process run within the same tolerance, and a rerun resumes from the sharded checkpoint (pretrain);
 *   a full sft under FSDP equals its 1-process run too.
 * - DeepSpeed needs CUDA and the deepspeed package: only its config and launch are checked here.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa, type ResultPromise } from "execa"
import { beforeAll, describe, expect, it } from "vitest"
import { pretrain, sft, sftLora, tokenize, torchrunArgv } from "../../../steps/train/index.ts"
import { trainingResources } from "../../../steps/train/common.ts"
import { torchrunFailure } from "../../../engine/executors/local.ts"
import { projectRoot, pythonExecutable } from "../../../engine/python.ts"
import { nodeBinary } from "../../../engine/executors/cluster-executor.ts"
import { makeWarmWorkers } from "../../../engine/warm-workers.ts"
import { here, makeFixtures, modelTools, runWorker, singleProcessReference, tempDir } from "./helpers.ts"

let fx: string
beforeAll(async () => {
  fx = await makeFixtures()
})

/** The live children of a process (torchrun's ranks). */
const childrenOf = (pid: number): Array<number> => {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}
const rankOf = (pid: number): number | undefined => {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
    const r = env.find((e) => e.startsWith("RANK="))
    return r === undefined ? undefined : Number(r.slice(5))
  } catch {
    return undefined
  }
}
const alive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return !/\) [ZX] /.test(stat)
  } catch {
    return false
  }
}

/** Kills global rank 1 once rank 0 reports an optimizer step past the first checkpoint; records every rank's pid. */
const killRankOneAfter = (step: number) => {
  const ranks = new Set<number>()
  let killed: number | undefined
  const watch = (child: ResultPromise) => {
    for (const pid of childrenOf(child.pid!)) ranks.add(pid)
  }
  return {
    ranks,
    killed: () => killed,
    poll: watch,
    onLine: (line: Record<string, any>, child: ResultPromise) => {
      watch(child)
      if (killed === undefined && line.type === "progress" && line.loss !== undefined && line.current >= step) {
        const victim = [...ranks].find((pid) => rankOf(pid) === 1)
        if (victim !== undefined) {
          killed = victim
          process.kill(victim, "SIGKILL")
        }
      }
    }
  }
}

const tiny = { seqLen: 32, hiddenSize: 32, intermediateSize: 64, maxSteps: 12, learningRate: 3e-3, seed: 5 }
const tolerance = 1e-4

describe("pretrain on 2 processes (torchrun, gloo)", () => {
  /** the 1-process run both tests compare with (from a tokenize output; the 2-process runs tokenize themselves) */
  let reference: Promise<string> | undefined
  const singleProcess = () => (reference ??= (async () => {
    const tokens = await runWorker(tokenize, { inputs: { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") } })
    expect(tokens.error).toBeUndefined()
    expect(JSON.parse(fs.readFileSync(path.join(tokens.output, "tokens.json"), "utf8"))).toMatchObject({ dtype: "uint16" })
    const one = await runWorker(pretrain, {
      inputs: { tokens: tokens.output, tokenizer: path.join(fx, "tokenizer") }, params: { ...tiny, microBatchSize: 4 }
    })
    expect(one.error).toBeUndefined()
    expect(one.exitCode).toBe(0)
    return one.output
  })())

  it("DDP: killing one rank fails the step with no process left; the rerun resumes and equals the 1-process run", async () => {
    const single = await singleProcess()

    // from data (tokenized into the resume dir), same global batch: 2 processes x 2 sequences
    const params = { ...tiny, microBatchSize: 2, processes: 2, saveSteps: 4 }
    const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }
    const resumeDir = tempDir("anneal-ddp-resume-")
    const kill = killRankOneAfter(6)
    const killed = await runWorker(pretrain, { inputs, params, resumeDir, onLine: kill.onLine, poll: kill.poll })
    expect(kill.killed()).toBeDefined()
    expect(killed.exitCode).not.toBe(0)
    expect(fs.existsSync(path.join(killed.output, "model.safetensors"))).toBe(false)
    // torchrun stopped the surviving rank: no rank process is left
    expect([...kill.ranks].filter(alive)).toEqual([])
    expect(fs.readdirSync(resumeDir).some((d) => d.startsWith("checkpoint-"))).toBe(true)

    const resumed = await runWorker(pretrain, { inputs, params, resumeDir })
    expect(resumed.error).toBeUndefined()
    expect(resumed.exitCode).toBe(0)
    expect(resumed.metrics.processes).toBe(2)
    expect(resumed.lines.some((l) => l.type === "log" && /resuming from .*checkpoint-/.test(l.message))).toBe(true)
    // only rank 0 reports: one progress line per optimizer step, from the checkpoint on
    const steps = resumed.lines.filter((l) => l.type === "progress" && l.loss !== undefined).map((l) => l.current)
    expect(steps[0]).toBeGreaterThan(4)
    expect(steps.at(-1)).toBe(12)
    expect(new Set(steps).size).toBe(steps.length)
    // rank 1 kept its own log beside the step's
    const rankLog = path.join(path.dirname(resumed.output), "log.rank1.log")
    expect(fs.existsSync(rankLog)).toBe(true)

    const d = await modelTools("maxdiff", single, resumed.output)
    console.log(`pretrain, 2-process DDP (killed, resumed) vs 1 process: max |weight difference| ${d.max_abs} (${d.tensor})`)
    expect(d.max_abs).toBeLessThan(tolerance)
  }, 1_800_000) // five Python runs in a row: about 2 minutes idle, 10 on a machine loaded 15x

  it("FSDP on CPU: the model is sharded across the ranks, equals the 1-process run, and resumes from a sharded checkpoint", async () => {
    const single = await singleProcess()
    const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }
    const params = { ...tiny, microBatchSize: 2, processes: 2, saveSteps: 4, strategy: "fsdp" }
    const resumeDir = tempDir("anneal-fsdp-resume-")
    const first = await runWorker(pretrain, { inputs, params, resumeDir })
    expect(first.error).toBeUndefined()
    expect(first.exitCode).toBe(0)
    // not DDP under another name: no warning, and each checkpoint holds one model and optimizer shard per rank
    expect(first.lines.filter((l) => l.type === "log" && l.level === "warn")).toEqual([])
    const shards = (d: string) => fs.readdirSync(path.join(resumeDir, "checkpoint-8", d)).filter((f) => f.endsWith(".distcp")).sort()
    expect(shards("pytorch_model_fsdp_0")).toEqual(["__0_0.distcp", "__1_0.distcp"])
    expect(shards("optimizer_0")).toEqual(["__0_0.distcp", "__1_0.distcp"])
    expect(fs.existsSync(path.join(resumeDir, "checkpoint-8", "model.safetensors"))).toBe(false)
    // the finished model is gathered into one ordinary safetensors file
    const d = await modelTools("maxdiff", single, first.output)
    console.log(`pretrain, 2-process FSDP vs 1 process: max |weight difference| ${d.max_abs} (${d.tensor})`)
    expect(d.max_abs).toBeLessThan(tolerance)

    // a run that died after the checkpoint at step 8: the rerun loads the sharded checkpoint and ends the same
    fs.rmSync(path.join(resumeDir, "checkpoint-12"), { recursive: true })
    const resumed = await runWorker(pretrain, { inputs, params, resumeDir })
    expect(resumed.error).toBeUndefined()
    expect(resumed.lines.some((l) => l.type === "log" && /resuming from .*checkpoint-8$/.test(l.message))).toBe(true)
    const steps = resumed.lines.filter((l) => l.type === "progress" && l.loss !== undefined).map((l) => l.current)
    expect(steps).toEqual([9, 10, 11, 12])
    const r = await modelTools("maxdiff", single, resumed.output)
    console.log(`pretrain, 2-process FSDP resumed from a sharded checkpoint vs 1 process: max |weight difference| ${r.max_abs}`)
    expect(r.max_abs).toBeLessThan(tolerance)
  }, 900_000)
})

describe("sft-lora on 2 processes (torchrun, gloo)", () => {
  it("equals the 1-process run with the same global batch", async () => {
    const inputs = { model: path.join(fx, "base"), data: path.join(fx, "instructions") }
    const common = { maxSteps: 6, learningRate: 1e-2, loraDropout: 0, seed: 3 }
    // microBatchSize 4, the run ray.test.ts and slurm.test.ts compare with too: made once per test run
    const one = singleProcessReference(sftLora, inputs, common)
    const two = await runWorker(sftLora, { inputs, params: { ...common, microBatchSize: 2, processes: 2 } })
    expect(two.error).toBeUndefined()
    expect(two.exitCode).toBe(0)
    const d = await modelTools("maxdiff", await one, two.output)
    console.log(`sft-lora, 2-process DDP vs 1 process: max |adapter weight difference| ${d.max_abs} (${d.tensor})`)
    expect(d.max_abs).toBeLessThan(tolerance)
  }, 600_000)
})

describe("full sft with FSDP on 2 processes (torchrun, gloo)", () => {
  it("equals the 1-process run (the whole model sharded, gathered into one safetensors file at the end)", async () => {
    const inputs = { model: path.join(fx, "base"), data: path.join(fx, "instructions") }
    const common = { adapter: "full", maxSteps: 4, learningRate: 1e-3, seed: 3 }
    const [one, two] = await Promise.all([
      runWorker(sft, { inputs, params: { ...common, microBatchSize: 4 } }),
      runWorker(sft, { inputs, params: { ...common, microBatchSize: 2, processes: 2, strategy: "fsdp" } })
    ])
    expect(one.error).toBeUndefined()
    expect(two.error).toBeUndefined()
    expect([one.exitCode, two.exitCode]).toEqual([0, 0])
    const d = await modelTools("maxdiff", one.output, two.output)
    console.log(`sft (full), 2-process FSDP vs 1 process: max |weight difference| ${d.max_abs} (${d.tensor})`)
    expect(d.max_abs).toBeLessThan(tolerance)
  }, 600_000)
})

describe("launch and strategy checks (no training)", () => {
  it("one node: loopback rendezvous on a kernel-picked port, no restarts; several nodes: static rendezvous on node 0", () => {
    expect(torchrunArgv({ python: "py", script: "w.py", args: ["s.json"], nodes: 1, processesPerNode: 2 })).toEqual([
      "py", "-m", "torch.distributed.run", "--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0",
      "--nproc-per-node", "2", "--max-restarts", "0", "w.py", "s.json"
    ])
    const node1 = torchrunArgv({
      python: "py", script: "w.py", args: ["s.json"], nodes: 2, processesPerNode: 4, nodeRank: 1, masterAddr: "gpu-01",
      masterPort: 29512, runId: "k"
    })
    expect(node1.join(" ")).toBe(
      "py -m torch.distributed.run --nnodes 2 --node-rank 1 --master-addr gpu-01 --master-port 29512 --rdzv-id k --nproc-per-node 4 --max-restarts 0 w.py s.json"
    )
    expect(() => torchrunArgv({ python: "py", script: "w.py", args: [], nodes: 2, processesPerNode: 1, masterAddr: "h" }))
      .toThrow(/fixed master port/)
    expect(() => torchrunArgv({ python: "py", script: "w.py", args: [], nodes: 2, processesPerNode: 1, nodeRank: 2, masterAddr: "h", masterPort: 1 }))
      .toThrow(/node rank 2/)
  })

  it("a torchrun command starts cold: the warm Python process never hosts it", async () => {
    const warm = makeWarmWorkers()
    const argv = torchrunArgv({ python: pythonExecutable(), script: "/x/worker.py", args: ["s.json"], nodes: 1, processesPerNode: 2 })
    expect(warm.command(argv)).toBeUndefined()
    expect(warm.pid()).toBeUndefined() // nothing was started for it
    await warm.close()
  })

  it("a failed torchrun step names the rank that failed, not the summary's closing rule", () => {
    const summary = `torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
worker.py FAILED
------------------------------------------------------------
Failures:
<NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
time      : 2026-12-02_01:00:00
host      : box
rank      : 1 (local_rank: 1)
exitcode  : -9 (pid: 4242)  (SIGKILL)
error_file: <N/A>
traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================`.split("\n")
    // torch 2.15's summary, as a torchrun whose rank 1 was SIGKILLed printed it
    expect(torchrunFailure(summary)).toBe("torchrun: rank 1 (local_rank: 1) failed (exit code -9): Signal 9 (SIGKILL) received by PID 4242")
    expect(torchrunFailure(["Traceback (most recent call last):", "ValueError: x"])).toBeUndefined()
  })

  it("the step asks for the whole gang; a multi-node step's command is the plain worker (each node's torchrun is the cluster executor's)", () => {
    expect(trainingResources({ nodes: 2, gpusPerNode: 4, processes: 1 })).toMatchObject({ gpus: 8, cpus: 8, nodes: 2, processesPerNode: 4 })
    expect(trainingResources({ processes: 2 })).toMatchObject({ gpus: 2, cpus: 2, nodes: 1, processesPerNode: 2 })
    const cmd = pretrain.definition.implementation.command!
    const argv = cmd({ params: { nodes: 2, processes: 1 } as never, specPath: "s.json", step: "pt", gpus: [], cpus: 2 }).argv
    expect(argv.slice(-1)).toEqual(["s.json"])
    expect(argv.join(" ")).not.toMatch(/torch\.distributed\.run|torchrun/)
  })

  it("anneal plan shows a distributed step's per-node split, launch, rendezvous and strategy (text and --json)", async () => {
    const dir = tempDir("anneal-plan-multinode-")
    fs.writeFileSync(path.join(dir, "anneal.config.json"), JSON.stringify({ slurm: { partition: "gpu", gpuType: "h100" } }))
    const recipe = path.join(dir, "recipe.ts")
    fs.writeFileSync(recipe, `export { default } from ${JSON.stringify(path.join(here, "fixtures", "multinode-recipe.ts"))}\n`)
    const plan = (...args: Array<string>) =>
      execa(nodeBinary(), [path.join(projectRoot, "bin", "anneal.js"), "plan", recipe, ...args, "--store", path.join(dir, ".anneal")], {
        cwd: dir, reject: false, stdin: "ignore", env: { ANNEAL_SFT_FIXTURES: fx }
      })
    const [text, json, ray] = await Promise.all([plan("--executor", "slurm"), plan("--executor", "slurm", "--json"), plan("--executor", "ray")])
    expect(text.exitCode, text.stderr).toBe(0)
    // the job asks for each node's share, as the submission does: 2 nodes, one task each, 4 GPUs per node
    expect(text.stdout).toMatch(/^ {2}sft-2x4: slurm: sbatch --requeue --nodes=2 --ntasks-per-node=1 --cpus-per-task=4 --mem-per-cpu=\d+M --gpus-per-node=h100:4 --partition=gpu /m)
    expect(text.stdout).toContain("\ndistributed training (slurm):\n")
    expect(text.stdout).toMatch(/^ {2}sft-2x4: 2 nodes x 4 processes \(world 8\), strategy fsdp; srun: one task per node \(--nodes=2 --ntasks-per-node=1\), each running torchrun with its node rank; rendezvous static on node 0 /m)
    expect(text.stdout).toMatch(/^ {2}sft-cpu2: 1 node x 2 processes \(world 2\), strategy ddp; torchrun inside the step's job; rendezvous c10d on 127\.0\.0\.1/m)
    const rows = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>).filter((r) => r.event === "plan")
    expect(rows.find((r) => r.step === "sft-2x4")?.distributed).toMatchObject({ nodes: 2, processesPerNode: 4, worldSize: 8, strategy: "fsdp" })
    expect(rows.find((r) => r.step === "sft-2x4")?.where).toMatch(/--nodes=2 --ntasks-per-node=1/)
    expect(ray.stdout).toMatch(/^ {2}sft-2x4: ray: 4 GPU, 4 CPU/m)
    expect(ray.stdout).toMatch(/^ {2}sft-2x4: 2 nodes x 4 processes \(world 8\), strategy fsdp; a placement group of 2 bundles, one actor per bundle/m)
    // with gangOnOneNode the plan's launch line says what the submission does: every task on one node
    fs.writeFileSync(path.join(dir, "anneal.config.json"), JSON.stringify({ slurm: { partition: "gpu", gpuType: "h100", gangOnOneNode: true } }))
    const oneNode = await plan("--executor", "slurm")
    expect(oneNode.exitCode, oneNode.stderr).toBe(0)
    expect(oneNode.stdout).toMatch(/^ {2}sft-2x4: slurm: sbatch --requeue --nodes=1 --ntasks=2 /m)
    expect(oneNode.stdout).toMatch(/^ {2}sft-2x4: 2 nodes x 4 processes \(world 8\), strategy fsdp; srun: 2 tasks on one node \(--nodes=1 --ntasks=2/m)
  }, 120_000)

  it("deepspeed: the generated ZeRO config, a passthrough config, and a clear refusal without CUDA", async () => {
    const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }
    const r = await runWorker(pretrain, { inputs, params: { ...tiny, strategy: "deepspeed", deepspeedStage: 3 } })
    expect(r.exitCode).toBe(2)
    expect(r.error).toMatch(/pretrain: strategy deepspeed needs CUDA GPUs/)
    const wrong = await runWorker(pretrain, { inputs, params: { ...tiny, deepspeedConfig: { zero_optimization: { stage: 2 } } } })
    expect(wrong.exitCode).toBe(2)
    expect(wrong.error).toMatch(/param deepspeedConfig is set but strategy is 'ddp'/)
    const lora = await runWorker(sftLora, {
      inputs: { model: path.join(fx, "base"), data: path.join(fx, "instructions") }, params: { strategy: "fsdp", processes: 2 }
    })
    expect(lora.exitCode).not.toBe(0)
    expect(lora.error).toMatch(/strategy fsdp with a LoRA adapter is not supported/)
  }, 600_000)
})
