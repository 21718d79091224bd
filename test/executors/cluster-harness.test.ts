/**
 * The test clusters never outlive a failed start: a Ray head or a Slurm cluster whose start times out,
 * or that is stopped while it is starting, leaves no process behind. (slurm.test.ts and ray.test.ts check
 * the ordinary start and stop.)
 */
import { describe, expect, it } from "vitest"
import { rayCluster, rayInstalled } from "./ray-cluster.ts"
import { slurmCluster, slurmInstalled } from "./slurm-cluster.ts"
import { waitFor } from "./cluster-ports.ts"

describe.concurrent("test clusters that fail to start", () => {
  it.skipIf(!rayInstalled())("a Ray start that runs out of time is stopped, and so is one stopped mid-start", async () => {
    const late = rayCluster()
    try {
      // far too short for `ray start`: it is killed at its deadline, with whatever it had started
      await expect(late.start(2000)).rejects.toThrow(/starting a Ray head on loopback failed/)
      expect(late.processes()).toEqual([])
    } finally {
      await late.stop()
    }

    const stopped = rayCluster()
    const starting = stopped.start(300_000)
    const settled = starting.then(() => "started", (e: Error) => e.message)
    await waitFor("Ray's first process", () => (stopped.processes().length > 0 ? true : undefined), 120_000)
    await stopped.stop()
    expect(await settled).toMatch(/stopped/)
    expect(stopped.processes()).toEqual([])
  }, 600_000)

  it.skipIf(!slurmInstalled())("a Slurm cluster stopped while it starts leaves nothing running", async () => {
    const cluster = slurmCluster()
    const settled = cluster.start(120_000).then(() => "started", (e: Error) => e.message)
    await waitFor("Slurm's first daemon", () => (cluster.processes().length > 0 ? true : undefined), 60_000, 20)
    await cluster.stop()
    // a start that had already finished is stopped all the same; one still under way gives up
    expect(await settled).toMatch(/^started$|stopped/)
    expect(cluster.processes()).toEqual([])
  }, 300_000)
})
