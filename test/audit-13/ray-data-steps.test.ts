/**
 * format, n-gram decontaminate, exact and MinHash dedup with their shard tasks as Ray tasks on a real
 * one-node Ray head (test/executors/ray-cluster.ts): the same bytes as one process here
 * (cluster-data-steps.ts says why these steps; clean and the semantic steps are in ray.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeRayBackend } from "../../engine/executors/ray.ts"
import { rayShardRunner } from "../../engine/executors/shard-jobs.ts"
import { shardCommand } from "../../steps/data/fanout.ts"
import { clusterTestTimeoutMs, killTracked } from "../executors/cluster-ports.ts"
import { rayBinary, rayCluster, rayInstalled, rayStartDeadlineMs } from "../executors/ray-cluster.ts"
import type { RayCluster } from "../executors/ray-cluster.ts"
import { clusterDataSteps, expectClusterParity } from "./cluster-data-steps.ts"

let cluster: RayCluster | undefined
const ray = rayCluster()
afterAll(async () => {
  killTracked()
  await ray.stop()
}, 120_000)

beforeAll(async () => {
  if (!rayInstalled()) throw new Error(`Ray is not installed at ${rayBinary()}: run npx anneal setup`)
  cluster = await ray.start()
}, rayStartDeadlineMs + 60_000)

describe("data steps as Ray tasks (issue 13)", () => {
  it("format, decontaminate (n-gram), dedup exact and dedup minhash: 3 and 8 shard tasks as Ray tasks write the bytes of one process here", async () => {
    // two Ray tasks a stage (one Ray job a stage): the 14 MinHash band tasks run 7 to a Ray task
    const cuts = [3, 8]
    const runner = rayShardRunner(makeRayBackend({ address: cluster!.address, pollSeconds: 0.5 }), shardCommand, { pollSeconds: 0.5, maxTasks: 2 })
    expectClusterParity(await clusterDataSteps(runner, cuts), cuts, expect)
  }, clusterTestTimeoutMs)
})
