/** anneal.config.json and --executor: which executor runs, with which settings, and where a step goes. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { describe, expect, it } from "vitest"
import { chooseExecutor, describePlacement, loadProjectConfig, makeExecutor, readConfigFile, schedulingCapacity } from "../../engine/executor-config.ts"
import { nodeBinary } from "../../engine/executors/cluster-executor.ts"
import { projectRoot } from "../../engine/python.ts"
import { trainRecipe } from "./recipe-parity.ts"

const project = (config: unknown): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-config-"))
  fs.writeFileSync(path.join(dir, "anneal.config.json"), typeof config === "string" ? config : JSON.stringify(config))
  fs.mkdirSync(path.join(dir, "recipes"))
  return dir
}

describe("executor config", () => {
  it("--executor wins over the config file, which wins over local", () => {
    expect(chooseExecutor(undefined, {})).toBe("local")
    expect(chooseExecutor(undefined, { executor: "slurm" })).toBe("slurm")
    expect(chooseExecutor("ray", { executor: "slurm" })).toBe("ray")
    expect(() => chooseExecutor("kubernetes", {})).toThrow('unknown executor "kubernetes": use local, slurm, ray')
  })

  it("finds anneal.config.json above the recipe's directory and builds the executor it names", () => {
    const dir = project({ executor: "ray", ray: { address: "http://127.0.0.1:1" } })
    const config = loadProjectConfig(path.join(dir, "recipes"))
    expect(config.ray?.address).toBe("http://127.0.0.1:1")
    expect(makeExecutor(chooseExecutor(undefined, config), config).name).toBe("ray")
    expect(makeExecutor("slurm", config).name).toBe("slurm")
    expect(makeExecutor("local", config).name).toBe("local")
  })

  it("rejects a bad config file with one line naming the file and the field", () => {
    const typo = project({ slurm: { partiton: "gpu" } })
    expect(() => readConfigFile(path.join(typo, "anneal.config.json"))).toThrow(/anneal\.config\.json: .*partiton/)
    const wrongType = project({ slurm: { memoryGb: "lots" } })
    expect(() => readConfigFile(path.join(wrongType, "anneal.config.json"))).toThrow(/anneal\.config\.json: .*memoryGb/)
    const notJson = project("{ executor: slurm")
    expect(() => readConfigFile(path.join(notJson, "anneal.config.json"))).toThrow(/anneal\.config\.json: /)
    for (const f of [typo, wrongType, notJson]) {
      const message = (() => {
        try {
          readConfigFile(path.join(f, "anneal.config.json"))
          return ""
        } catch (e) {
          return (e as Error).message
        }
      })()
      expect(message.split("\n")).toHaveLength(1)
    }
  })

  it("says where a step would run, with per-step overrides by id over kind over defaults", () => {
    const config = {
      slurm: {
        partition: "gpu",
        timeLimit: "04:00:00",
        steps: { sft: { partition: "a100", timeLimit: "1-00:00:00" }, "sft-long": { timeLimit: "2-00:00:00" } }
      }
    }
    const resources = { gpus: 4, cpus: 8, memoryGb: 64 }
    expect(describePlacement("slurm", config, "pretrain", "pretrain", resources))
      .toBe("slurm: sbatch --requeue --cpus-per-task=8 --mem=65536M --gres=gpu:4 --partition=gpu --time=04:00:00 --signal=B:USR1@120")
    expect(describePlacement("slurm", config, "sft-short", "sft", resources)).toContain("--partition=a100 ")
    expect(describePlacement("slurm", config, "sft-long", "sft", resources)).toContain("--time=2-00:00:00")
    expect(describePlacement("ray", {}, "sft", "sft", resources)).toBe("ray: 4 GPU, 8 CPU, 64 GiB")
    expect(describePlacement("local", {}, "clean", "clean", { gpus: 0, cpus: 1 })).toBe("local: 0 GPU, 1 CPU")
    // a step that names no memory (the plan's request says 0) gets the config's default, as its job does
    expect(describePlacement("slurm", { slurm: { memoryGb: 8 } }, "clean", "clean", { gpus: 0, cpus: 0, memoryGb: 0 }))
      .toBe("slurm: sbatch --requeue --cpus-per-task=1 --mem=8192M --signal=B:USR1@120")
    expect(describePlacement("ray", { ray: { memoryGb: 2, steps: { clean: { resources: { a10g: 1 } } } } }, "clean", "clean", { gpus: 0, cpus: 1, memoryGb: 0 }))
      .toBe('ray: 0 GPU, 1 CPU, 2 GiB, {"a10g":1}')
  })

  it("takes Ray headers and a CA file, and refuses an address that is not http(s) with a one-line error", () => {
    const dir = project({ executor: "ray", ray: { address: "https://ray.example.org/proxy", headers: { Authorization: "Bearer ${RAY_TOKEN}" }, caFile: "/etc/ca.pem" } })
    const config = loadProjectConfig(dir)
    expect(config.ray?.headers).toEqual({ Authorization: "Bearer ${RAY_TOKEN}" })
    expect(makeExecutor("ray", config).name).toBe("ray")
    expect(() => makeExecutor("ray", { ray: { address: "ftp://head:8265" } })).toThrow("ray executor: the Ray address ftp://head:8265 must start with http:// or https://")
  })

  it("anneal plan --executor slurm prints the sbatch arguments each step's job will get, memory included", async () => {
    const dir = project({ slurm: { partition: "gpu", memoryGb: 6, steps: { "fixture-train": { timeLimit: "00:20:00" } } } })
    const recipe = path.join(dir, "recipe.ts")
    fs.writeFileSync(recipe, `export { default } from ${JSON.stringify(trainRecipe)}\n`)
    const r = await execa(nodeBinary(), [path.join(projectRoot, "bin", "anneal.js"), "plan", recipe, "--executor", "slurm", "--store", path.join(dir, ".anneal")], {
      cwd: dir,
      reject: false,
      stdin: "ignore"
    })
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain("where steps would run (slurm):")
    expect(r.stdout).toMatch(/^ {2}train: slurm: sbatch --requeue --cpus-per-task=1 --mem=6144M --partition=gpu --time=00:20:00 --signal=B:USR1@120$/m)
  })

  it("gives cluster runs a pool of their own: GPU slots the driver does not need to have", () => {
    expect(schedulingCapacity("local", {})).toBeUndefined()
    const slurm = schedulingCapacity("slurm", { slurm: { maxGpus: 8, maxCpus: 32 } })!
    expect(slurm.gpus).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(slurm.cpus).toBe(32)
    expect(schedulingCapacity("ray", {})!.gpus).toHaveLength(64)
  })
})
