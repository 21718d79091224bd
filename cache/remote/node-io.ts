/**
 * Step inputs and outputs through the remote, for a step that runs where the driver's store is not
 * mounted (a cluster node with its own disk). Four moves:
 *
 *   driver  `ensureUploaded`  before handing a step over: every artifact the step reads is in the remote
 *   node    `stageInputs`     pulls those artifacts into the node's own store (checked, committed) and
 *                             returns the spec with its input paths pointing there
 *   node    `publishOutput`   commits the step's output into the node's store and uploads it (blobs, then
 *                             manifest); returns its hash. No index entry: the driver records the result
 *   driver  `collectOutput`   pulls that hash into the driver's store (skipped when it is already there)
 *
 * The Slurm and Ray executors use the node's two through cache/remote/node-job.ts, and do the driver's
 * through cache/remote/job-channel.ts (which downloads the output into the job's attempt directory, for
 * the engine to commit as it commits any step's). test/cache/remote.test.ts runs all four with two stores.
 */
import type { Store } from "../store.ts"
import type { StepSpec } from "../../engine/spec.ts"
import type { RemoteStore } from "./remote-store.ts"

/** Artifact hashes a spec reads (its non-source inputs), from its inputHashes and input paths. */
export const inputArtifacts = (spec: StepSpec, driverStore: Store): Array<string> => {
  const hashes: Array<string> = []
  for (const [port, value] of Object.entries(spec.inputs)) {
    const paths = Array.isArray(value) ? value : [value as string]
    const hs = spec.inputHashes[port]
    const list = Array.isArray(hs) ? hs : [hs as string]
    paths.forEach((p, i) => {
      if (p === driverStore.artifactPath(list[i]!)) hashes.push(list[i]!)
    })
  }
  return [...new Set(hashes)]
}

/** Driver side: makes sure every artifact `spec` reads is in the remote before the step goes elsewhere. */
export const ensureUploaded = async (remote: RemoteStore, driverStore: Store, spec: StepSpec): Promise<void> => {
  for (const h of inputArtifacts(spec, driverStore)) await remote.push(driverStore, h)
}

/**
 * Node side: pulls the artifacts `spec` reads into `nodeStore` and returns the spec with its input
 * paths rewritten to them (source inputs are left as they are: they must be readable on the node).
 */
export const stageInputs = async (remote: RemoteStore, nodeStore: Store, spec: StepSpec, driverStore: { artifactPath: (h: string) => string }): Promise<StepSpec> => {
  const inputs: Record<string, string | ReadonlyArray<string>> = {}
  for (const [port, value] of Object.entries(spec.inputs)) {
    const hs = spec.inputHashes[port]
    const list = Array.isArray(hs) ? hs : [hs as string]
    const rewrite = async (p: string, i: number): Promise<string> => {
      const h = list[i]!
      if (p !== driverStore.artifactPath(h)) return p
      if (!(nodeStore.db.artifact(h) !== undefined && nodeStore.has(h))) await remote.pull(nodeStore, h)
      return nodeStore.artifactPath(h)
    }
    inputs[port] = Array.isArray(value) ? await Promise.all((value as ReadonlyArray<string>).map(rewrite)) : await rewrite(value as string, 0)
  }
  return { ...spec, inputs }
}

/** Node side: commits a finished output directory into `nodeStore` and uploads it; returns its hash. */
export const publishOutput = async (remote: RemoteStore, nodeStore: Store, outputDir: string, kind: string, describe: Record<string, unknown>): Promise<string> => {
  const committed = await nodeStore.commit(outputDir, kind, describe)
  await remote.push(nodeStore, committed.hash)
  return committed.hash
}

/** Driver side: brings an output a node published into the driver's store. */
export const collectOutput = async (remote: RemoteStore, driverStore: Store, hash: string): Promise<void> => {
  if (driverStore.db.artifact(hash) !== undefined && driverStore.has(hash)) return
  await remote.pull(driverStore, hash)
}
