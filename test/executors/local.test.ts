import * as fs from "node:fs"
import { afterAll, describe, expect, it } from "vitest"
import { makeLocalExecutor } from "../../engine/executors/local.ts"
import { executorContract } from "./contract.ts"
import { makeStoreDir, runSpec, workerSpec } from "./specs.ts"

executorContract("local", { executor: makeLocalExecutor })

describe("local executor: what only a cluster can run", () => {
  const store = makeStoreDir()
  afterAll(() => fs.rmSync(store, { recursive: true, force: true }))

  it("refuses a multi-node step with one line naming the step and the param, before starting anything", async () => {
    const spec = workerSpec(store, { params: { nodes: 2, text: "never", steps: 1 } })
    const { result, error } = await runSpec(makeLocalExecutor(), spec)
    expect(result).toBeUndefined()
    expect(error?.step).toBe("train")
    expect(error?.message).toMatch(/^param nodes is 2: a multi-node step runs on the Slurm or Ray executor/)
    expect(fs.readdirSync(spec.output)).toEqual([])
  })
})
