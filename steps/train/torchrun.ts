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

/** How `anneal plan` shows a distributed training step: the per-node split, the rendezvous and the strategy. */
export interface DistributionPlan {
  readonly nodes: number
  readonly processesPerNode: number
  readonly worldSize: number
  readonly strategy: string
  /** where the processes meet (torchrun's rendezvous) under this executor */
  readonly rendezvous: string
  /** how each node's torchrun is started */
  readonly launch: string
}

const rendezvousOf = (executor: string, nodes: number, gangOnOneNode: boolean): { rendezvous: string; launch: string } => {
  if (nodes === 1) {
    return {
      rendezvous: "c10d on 127.0.0.1, a port the kernel picks",
      launch: executor === "local" ? "torchrun on this machine" : "torchrun inside the step's job"
    }
  }
  switch (executor) {
    case "slurm":
      return {
        rendezvous: "static on node 0 (its NodeAddr, port 20000 + job id % 20000)",
        launch: gangOnOneNode
          ? `srun: ${nodes} tasks on one node (--nodes=1 --ntasks=${nodes}, the executor's gangOnOneNode), each running torchrun with its node rank`
          : `srun: one task per node (--nodes=${nodes} --ntasks-per-node=1), each running torchrun with its node rank`
      }
    case "ray":
      return {
        rendezvous: "static on bundle 0's node (its IP, a port free there)",
        launch: `a placement group of ${nodes} bundles, one actor per bundle running torchrun with its node rank`
      }
    default:
      return { rendezvous: "none: the local executor refuses more than one node", launch: "needs the slurm or ray executor" }
  }
}

/**
 * The plan of a training step that runs more than one process, or undefined for one process. `nodes`
 * and `processesPerNode` as trainingResources gives them (steps/train/common.ts).
 */
export const distributionPlan = (
  executor: string,
  d: { readonly nodes: number; readonly processesPerNode: number; readonly strategy?: unknown },
  /** the Slurm executor's `gangOnOneNode`: a gang's tasks all go to one node */
  gangOnOneNode = false
): DistributionPlan | undefined => {
  if (d.nodes * d.processesPerNode <= 1) return undefined
  return {
    nodes: d.nodes,
    processesPerNode: d.processesPerNode,
    worldSize: d.nodes * d.processesPerNode,
    strategy: typeof d.strategy === "string" ? d.strategy : "ddp",
    ...rendezvousOf(executor, d.nodes, gangOnOneNode)
  }
}

/** One line for the plan's text: "2 nodes x 8 processes (world 16), strategy fsdp; srun: ...; rendezvous ...". */
export const describeDistribution = (p: DistributionPlan): string =>
  `${p.nodes} node${p.nodes === 1 ? "" : "s"} x ${p.processesPerNode} process${p.processesPerNode === 1 ? "" : "es"} ` +
  `(world ${p.worldSize}), strategy ${p.strategy}; ${p.launch}; rendezvous ${p.rendezvous}`
