/**
 * The torchrun command line of a distributed training step, one per node. The local executor runs the
 * single-node form; the cluster executors (Slurm: `srun` one task per node; Ray: one actor per node of a
 * placement group) run the same argv on every node with that node's rank and the first node's address.
 *
 * - One node, no address given: c10d rendezvous on 127.0.0.1 port 0, so the store binds a port the
 *   kernel picks (no race between choosing a free port and binding it) and nothing listens beyond
 *   loopback.
 * - Several nodes: static rendezvous (`--master-addr/--master-port/--node-rank`), so node 0 hosts
 *   global ranks 0..N-1 and global rank 0, the one that reports progress, runs where the job's first
 *   task runs.
 * - `--max-restarts 0` everywhere: a failed rank fails the step (torchrun stops the other ranks); the
 *   engine's rerun resumes from the last checkpoint, which is the restart policy.
 */

/** How many processes a training step runs, from its params (and the GPUs a run assigned). */
export interface Distribution {
  readonly nodes: number
  /** processes per node: gpusPerNode when set, else `processes` (CPU), else the GPUs assigned */
  readonly processesPerNode: number
}

export interface DistributedParams {
  readonly nodes?: number
  readonly gpusPerNode?: number | null
  readonly processes?: number
}

/**
 * nodes x processesPerNode; the world size fixes the global batch (microBatchSize x
 * gradientAccumulationSteps x world size), which is why these params are part of the step key.
 */
export const distribution = (p: DistributedParams, assignedGpus = 0): Distribution => ({
  nodes: p.nodes ?? 1,
  processesPerNode: p.gpusPerNode ?? (assignedGpus > 1 && (p.nodes ?? 1) === 1 ? assignedGpus : p.processes ?? 1)
})

export const worldSize = (d: Distribution): number => d.nodes * d.processesPerNode

export interface TorchrunLaunch {
  /** the Python interpreter (the project's environment) */
  readonly python: string
  /** the worker script and its arguments (the spec path) */
  readonly script: string
  readonly args: ReadonlyArray<string>
  readonly nodes: number
  readonly processesPerNode: number
  /** this node's rank, 0 on the node that hosts the rendezvous; ignored for one node */
  readonly nodeRank?: number
  /** the first node's address; default 127.0.0.1 (one node only) */
  readonly masterAddr?: string
  /** the first node's port for the rendezvous store; 0 (one node only) = a port the kernel picks */
  readonly masterPort?: number
  /** names the rendezvous (the step key): two jobs on one store never join each other */
  readonly runId?: string
}

export class TorchrunLaunchError extends Error {
  readonly _tag = "TorchrunLaunchError"
}

/** The per-node argv: `python -m torch.distributed.run ... SCRIPT ARGS...`, an argument array (no shell). */
export const torchrunArgv = (l: TorchrunLaunch): ReadonlyArray<string> => {
  const bad = (why: string) => {
    throw new TorchrunLaunchError(`torchrun launch: ${why}`)
  }
  if (!Number.isInteger(l.nodes) || l.nodes < 1) bad(`nodes must be a positive integer, got ${l.nodes}`)
  if (!Number.isInteger(l.processesPerNode) || l.processesPerNode < 1) {
    bad(`processes per node must be a positive integer, got ${l.processesPerNode}`)
  }
  const nodeRank = l.nodeRank ?? 0
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= l.nodes) bad(`node rank ${nodeRank} is not in 0..${l.nodes - 1}`)
  const port = l.masterPort ?? 0
  if (!Number.isInteger(port) || port < 0 || port > 65535) bad(`master port ${port} is not a port number`)
  const common = ["--nproc-per-node", String(l.processesPerNode), "--max-restarts", "0"]
  const rendezvous = l.nodes === 1 && l.masterAddr === undefined
    ? ["--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", `127.0.0.1:${port}`]
    : [
      "--nnodes", String(l.nodes),
      "--node-rank", String(nodeRank),
      "--master-addr", l.masterAddr ?? bad("several nodes need the first node's address (masterAddr)"),
      "--master-port", port > 0 ? String(port) : bad("several nodes need a fixed master port, not 0")
    ]
  const id = l.runId === undefined ? [] : ["--rdzv-id", l.runId]
  return [l.python, "-m", "torch.distributed.run", ...rendezvous, ...id, ...common, l.script, ...l.args]
}
