/**
 * format, n-gram decontaminate, exact and MinHash dedup with their shard tasks as Slurm job arrays on a
 * real one-node Slurm (test/executors/slurm-cluster.ts): the same bytes as one process here
 * (cluster-data-steps.ts says why these steps; clean and the semantic steps are in slurm.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { slurmShardRunner } from "../../engine/executors/shard-jobs.ts"
import { projectRoot } from "../../engine/python.ts"
import { shardCommand } from "../../steps/data/fanout.ts"
import { clusterTestTimeoutMs, killTracked } from "../executors/cluster-ports.ts"
import { slurmCluster, slurmInstalled, slurmStartDeadlineMs } from "../executors/slurm-cluster.ts"
import type { SlurmCluster } from "../executors/slurm-cluster.ts"
import { clusterDataSteps, expectClusterParity } from "./cluster-data-steps.ts"

let cluster: SlurmCluster | undefined
const slurm = slurmCluster()
afterAll(async () => {
  killTracked()
  await slurm.stop()
}, 120_000)

beforeAll(async () => {
  if (!slurmInstalled()) throw new Error("Slurm is not installed: run scripts/install-test-deps.sh as root")
  cluster = await slurm.start()
}, slurmStartDeadlineMs + 60_000)

describe("data steps as Slurm job arrays (issue 13)", () => {
  it("format, decontaminate (n-gram), dedup exact and dedup minhash: 3 and 8 shard tasks as array elements write the bytes of one process here", async () => {
    // at most 2 array elements a stage: the 14 MinHash band tasks run 7 to an element
    const cuts = [3, 8]
    const runner = slurmShardRunner({ slurmConf: cluster!.slurmConf, pollSeconds: 0.5, maxArraySize: 2 }, shardCommand, [projectRoot])
    expectClusterParity(await clusterDataSteps(runner, cuts), cuts, expect)
  }, clusterTestTimeoutMs)
})
