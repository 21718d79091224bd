/**
 * Data-step fan-out on a cluster. On Slurm, the shard tasks a data step's stages hand out (steps/data/fanout.ts
 * `setShardExecutor`) run as one Slurm job array, one element per task (or per group of tasks when there
 * are more than `maxArraySize`), each running `node shard-main.ts SPEC.json...` on some node. The data
 * step itself stays where placement put it (on the driver, by default): it plans the shards, waits for
 * the array, and merges the outputs in input order, so the artifact is the same bytes whatever ran the
 * tasks.
 *
 * A task is finished when its marker exists (fanout.ts); the array's elements need not report anything.
 * Tasks an element did not finish (a node lost, a bad shard) are run again on the driver by runStage,
 * alone, which is where a bad shard's one-line error comes from. Interrupting the step cancels the array.
 * The array's script is POSIX sh written beside the stage's specs, with the same setup lines and
 * container as a step's job; its output per element is `array-<pid>-<time>-<element>.out` there.
 *
 * On Ray, one Ray job (ray-shards.py) runs one Ray task per group of specs (1 CPU each), and the step
 * waits for the job; the rest is the same.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { pythonExecutable } from "../python.ts"
import type { ClusterBackend } from "./cluster-executor.ts"
import { shellQuote, writeAtomic } from "./cluster-job.ts"
import { containerPrefix, sbatchResourceArgs, slurmPlacement } from "./slurm-config.ts"
import type { SlurmOptions } from "./slurm-config.ts"

/** What fanout.ts asks of an executor (steps/data/fanout.ts ShardExecutor). */
export interface ShardRunner {
  readonly run: (specFiles: ReadonlyArray<string>, o: { readonly signal: AbortSignal; readonly workers: number }) => Promise<void>
}

/** The command that runs some shard specs (fanout.ts shardCommand). */
export type ShardCommand = (...specFiles: ReadonlyArray<string>) => { readonly node: string; readonly args: ReadonlyArray<string> }

export interface SlurmShardOptions extends SlurmOptions {
  /** the most elements one array gets (Slurm's MaxArraySize is 1001 by default); more tasks are grouped */
  readonly maxArraySize?: number | undefined
}

const chunks = <A>(xs: ReadonlyArray<A>, n: number): Array<Array<A>> =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, (i + 1) * n))

/** The array job's batch script: element i runs group i's specs. */
export const shardArrayScript = (options: SlurmOptions, groups: ReadonlyArray<ReadonlyArray<string>>, command: ShardCommand, binds: ReadonlyArray<string>): string => {
  const placement = slurmPlacement(options, "shards", "shards")
  const prefix = containerPrefix(placement.container, binds, 0)
  const setup = placement.setup ?? []
  return [
    "#!/bin/sh",
    "# anneal shard tasks, one array element per group, written by the Slurm executor",
    ...(setup.length > 0 ? ["set -e", ...setup.map((l) => l.replace(/\n/g, " ")), "set +e"] : []),
    'case "$SLURM_ARRAY_TASK_ID" in',
    ...groups.map((g, i) => {
      const c = command(...g)
      return `  ${i}) exec ${[...prefix, c.node, ...c.args].map(shellQuote).join(" ")} ;;`
    }),
    "esac",
    'echo "anneal: no shard group $SLURM_ARRAY_TASK_ID in this array" >&2',
    "exit 2",
    ""
  ].join("\n")
}

export const slurmShardRunner = (options: SlurmShardOptions, command: ShardCommand, binds: ReadonlyArray<string>): ShardRunner => {
  const env = options.slurmConf !== undefined ? { SLURM_CONF: options.slurmConf } : {}
  const slurm = async (cmd: string, args: ReadonlyArray<string>) => (await import("execa")).execa(cmd, args, { env, reject: false, timeout: 60_000, stdin: "ignore" })
  const pollMs = (options.pollSeconds ?? 1) * 1000
  return {
    run: async (specFiles, { signal }) => {
      if (specFiles.length === 0 || signal.aborted) return
      const dir = path.dirname(specFiles[0]!)
      const groups = chunks(specFiles, Math.ceil(specFiles.length / Math.max(1, options.maxArraySize ?? 1000)))
      const base = path.join(dir, `array-${process.pid}-${Date.now()}`)
      fs.writeFileSync(`${base}.sh`, shardArrayScript(options, groups, command, [dir, ...binds]), { mode: 0o755 })
      const placement = slurmPlacement(options, "shards", "shards")
      const r = await slurm("sbatch", [
        "--parsable", `--job-name=anneal-shards-${path.basename(dir).slice(0, 40)}`, `--output=${base}-%a.out`, `--chdir=${dir}`,
        `--array=0-${groups.length - 1}`, ...sbatchResourceArgs({ ...placement, signalSeconds: 0 }, { gpus: 0, cpus: 1 }), `${base}.sh`
      ])
      const id = r.stdout.trim().split(";")[0]!
      if (r.exitCode !== 0 || !/^\d+$/.test(id)) {
        throw new Error(`sbatch refused the shard array: ${(r.stderr || r.stdout).trim().split("\n").at(-1)}`)
      }
      // wait until no element is queued or running; an interrupt cancels the whole array
      for (;;) {
        if (signal.aborted) {
          await slurm("scancel", [id])
          return
        }
        const q = await slurm("squeue", ["-h", "-j", id, "-o", "%i|%T"])
        const live = q.exitCode === 0 && q.stdout.split("\n").some((l) => /\|(PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|SUSPENDED)/.test(l))
        if (!live && (q.exitCode === 0 || /Invalid job id/i.test(q.stderr))) return
        await new Promise<void>((ok) => {
          const t = setTimeout(ok, pollMs)
          signal.addEventListener("abort", () => (clearTimeout(t), ok()), { once: true })
        })
      }
    }
  }
}

const rayShardsScript = fileURLToPath(new URL("./ray-shards.py", import.meta.url))

/** Shard tasks as Ray tasks inside one Ray job, submitted and followed through `backend` (ray.ts). */
export const rayShardRunner = (backend: ClusterBackend, command: ShardCommand, options: { readonly pollSeconds?: number | undefined; readonly maxTasks?: number | undefined } = {}): ShardRunner => {
  const pollMs = (options.pollSeconds ?? 1) * 1000
  return {
    run: async (specFiles, { signal }) => {
      if (specFiles.length === 0 || signal.aborted) return
      const dir = path.dirname(specFiles[0]!)
      const groups = chunks(specFiles, Math.ceil(specFiles.length / Math.max(1, options.maxTasks ?? 1000)))
      const base = path.join(dir, `ray-${process.pid}-${Date.now()}`)
      writeAtomic(`${base}.json`, JSON.stringify({ commands: groups.map((g) => { const c = command(...g); return [c.node, ...c.args] }) }))
      const name = `anneal-shards-${path.basename(dir).slice(0, 40)}`
      const jobId = await backend.submit({
        jobId: backend.chooseJobId?.(name),
        name,
        step: "shards",
        kind: "shards",
        key: path.basename(base),
        attemptDir: dir,
        command: [pythonExecutable(), rayShardsScript, `${base}.json`],
        resources: { gpus: 0, cpus: 0 }
      })
      for (;;) {
        if (signal.aborted) {
          await backend.cancel(jobId).catch(() => undefined)
          return
        }
        const s = await backend.status(jobId)
        if (s.phase !== "queued" && s.phase !== "running") return
        await new Promise<void>((ok) => {
          const t = setTimeout(ok, pollMs)
          signal.addEventListener("abort", () => (clearTimeout(t), ok()), { once: true })
        })
      }
    }
  }
}
