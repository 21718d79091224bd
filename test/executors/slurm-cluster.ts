/**
 * A one-node Slurm cluster on loopback for the tests and the benchmark: munged with its own key and
 * socket, slurmctld and slurmd with a generated slurm.conf (8 CPUs, two fake GPUs as a `gpu` gres backed by
 * /dev/null and /dev/zero), everything under one temp directory.
 *
 * Made to start on a loaded machine and never to outlive its test file:
 * - `slurmCluster()` returns the handle before anything starts, so a test file registers `stop()` in
 *   afterAll before `start()` runs; `stop()` works at any moment, also while a start that its hook gave
 *   up on is still running (that start stops and kills what it started).
 * - The daemons carry ANNEAL_TEST_CLUSTER=<this cluster> in their environment, and every job the tests
 *   submit carries SLURM_CONF=<this cluster's slurm.conf>; `stop()` cancels what is queued, then ends
 *   every process with either mark and their descendants (slurmstepd and the jobs it runs daemonize,
 *   so pid files alone would miss them); an exit hook SIGKILLs them if the test process ends first.
 * - Readiness is the node reported idle by `sinfo`, polled until one overall deadline; a start that
 *   fails (a port taken between choosing and binding it) is cleaned up and retried with fresh ports.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { freePorts, killOwnedNow, ownedProcesses, retryUntil, startReaper, stopOwned, waitFor } from "./cluster-ports.ts"

export interface SlurmCluster {
  readonly dir: string
  /** environment for Slurm's client commands (SLURM_CONF) */
  readonly env: Readonly<Record<string, string>>
  readonly slurmConf: string
  readonly partition: string
  readonly stop: () => Promise<void>
}

export interface SlurmClusterHandle {
  /** starts the daemons (retrying within `deadlineMs`); rejects with what went wrong, having cleaned up */
  readonly start: (deadlineMs?: number) => Promise<SlurmCluster>
  /** stops every process this cluster started, at any stage, and removes its files; idempotent */
  readonly stop: () => Promise<void>
  /** the live processes this cluster started (what `stop()` would end) */
  readonly processes: () => Array<number>
}

/** How long a start may take in all, retries included. */
export const slurmStartDeadlineMs = 180_000

export const slurmInstalled = (): boolean =>
  ["sbatch", "slurmctld", "slurmd", "munged"].every((c) =>
    (process.env.PATH ?? "").split(":").concat(["/usr/sbin"]).some((d) => fs.existsSync(path.join(d, c)))
  )

const sbin = (name: string) => (fs.existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name)

export const slurmCluster = (): SlurmClusterHandle => {
  const tag = `slurm-${process.pid}-${randomBytes(4).toString("hex")}`
  const marks = [`ANNEAL_TEST_CLUSTER=${tag}`]
  const dirs: Array<string> = []
  let stopped = false
  const find = () => ownedProcesses(marks)
  const onExit = () => killOwnedNow(find)
  process.on("exit", onExit)
  // and for a test process killed by a signal, where neither afterAll nor the exit hook runs
  const dismissReaper = startReaper(marks.slice(0, 1))

  const killAll = async () => {
    for (const dir of dirs) {
      const env = { SLURM_CONF: path.join(dir, "slurm.conf") }
      if (!fs.existsSync(env.SLURM_CONF)) continue
      // cancelled jobs get their SIGTERM from slurmstepd, as on a real cluster; what is left is killed below
      await execa("scancel", ["--full", "--user=root"], { env, reject: false, timeout: 10_000, stdin: "ignore" })
      await waitFor("jobs to leave the queue", async () => {
        const r = await execa("squeue", ["-h", "-o", "%i"], { env, reject: false, timeout: 10_000, stdin: "ignore" })
        return r.exitCode !== 0 || r.stdout.trim() === "" ? true : undefined
      }, 20_000).catch(() => undefined)
    }
    await stopOwned(find)
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  }

  const stop = async () => {
    stopped = true
    await killAll()
    process.off("exit", onExit)
    dismissReaper()
  }

  const startOnce = async (timeLeftMs: number): Promise<SlurmCluster> => {
    const deadline = Date.now() + Math.max(1000, timeLeftMs)
    const left = () => Math.max(1000, deadline - Date.now())
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-slurm-"))
    dirs.push(dir)
    const slurmConf = path.join(dir, "slurm.conf")
    marks.push(`SLURM_CONF=${slurmConf}`)
    const env = { SLURM_CONF: slurmConf }
    const daemonEnv = { ...env, ANNEAL_TEST_CLUSTER: tag }
    try {
      const mungeDir = path.join(dir, "munge")
      for (const d of ["state", "spool", "munge"]) fs.mkdirSync(path.join(dir, d), { recursive: true })
      fs.chmodSync(dir, 0o755)
      fs.chmodSync(mungeDir, 0o755)
      const key = path.join(mungeDir, "munge.key")
      fs.writeFileSync(key, randomBytes(1024), { mode: 0o400 })
      const socket = path.join(mungeDir, "munge.sock")
      await execa(sbin("munged"), [
        "--force",
        `--socket=${socket}`,
        `--key-file=${key}`,
        `--pid-file=${path.join(mungeDir, "munged.pid")}`,
        `--log-file=${path.join(mungeDir, "munged.log")}`,
        `--seed-file=${path.join(mungeDir, "munged.seed")}`
      ], { env: daemonEnv, timeout: left(), stdin: "ignore" })

      const [ctldPort, slurmdPort] = await freePorts(2)
      // slurmctld compares SlurmctldHost with the short host name
      const host = os.hostname().split(".")[0]!
      const conf = [
        "ClusterName=annealtest",
        `SlurmctldHost=${host}(127.0.0.1)`,
        `SlurmctldPort=${ctldPort}`,
        `SlurmdPort=${slurmdPort}`,
        "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
        "AuthType=auth/munge",
        `AuthInfo=socket=${socket}`,
        "CredType=cred/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        `StateSaveLocation=${path.join(dir, "state")}`,
        `SlurmdSpoolDir=${path.join(dir, "spool")}`,
        `SlurmctldPidFile=${path.join(dir, "slurmctld.pid")}`,
        `SlurmdPidFile=${path.join(dir, "slurmd.pid")}`,
        `SlurmctldLogFile=${path.join(dir, "slurmctld.log")}`,
        `SlurmdLogFile=${path.join(dir, "slurmd.log")}`,
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "SlurmdParameters=config_overrides",
        // finished jobs stay visible to `scontrol show job` for an hour (no slurmdbd, so no sacct)
        "MinJobAge=3600",
        "KillWait=5",
        "ReturnToService=2",
        "GresTypes=gpu",
        `NodeName=annealnode NodeHostname=${host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=16000 Gres=gpu:2 State=UNKNOWN`,
        "PartitionName=debug Nodes=annealnode Default=YES MaxTime=INFINITE State=UP"
      ]
      fs.writeFileSync(slurmConf, conf.join("\n") + "\n")
      fs.writeFileSync(
        path.join(dir, "gres.conf"),
        "NodeName=annealnode Name=gpu File=/dev/null\nNodeName=annealnode Name=gpu File=/dev/zero\n"
      )
      await execa(sbin("slurmctld"), ["-f", slurmConf], { env: daemonEnv, timeout: left(), stdin: "ignore" })
      await execa(sbin("slurmd"), ["-f", slurmConf, "-N", "annealnode"], { env: daemonEnv, timeout: left(), stdin: "ignore" })
      await waitFor("the Slurm node to become idle", async () => {
        const r = await execa("sinfo", ["-h", "-N", "-o", "%T"], { env, reject: false, timeout: 10_000, stdin: "ignore" })
        return /^idle/m.test(r.stdout) ? true : undefined
      }, left(), 250, () => stopped)
      if (stopped) throw new Error("stopped while starting")
      return { dir, env, slurmConf, partition: "debug", stop }
    } catch (e) {
      const logs = ["slurmctld.log", "slurmd.log", "munge/munged.log"].map((f) => {
        try {
          return `--- ${f}\n` + fs.readFileSync(path.join(dir, f), "utf8").split("\n").slice(-15).join("\n")
        } catch {
          return ""
        }
      }).join("\n")
      // this attempt's daemons and files: the next attempt starts from nothing
      await killAll()
      throw new Error(`${(e as Error).message}\n${logs}`)
    }
  }

  const start = (deadlineMs = slurmStartDeadlineMs) =>
    retryUntil("starting a one-node Slurm cluster", (left) => startOnce(left), deadlineMs, () => stopped)

  return { start, stop, processes: find }
}

/** Starts a cluster; the returned cluster's `stop()` ends it. Prefer `slurmCluster()` in tests (stop registered first). */
export const startSlurm = (deadlineMs?: number): Promise<SlurmCluster> => {
  const handle = slurmCluster()
  return handle.start(deadlineMs).catch(async (e: unknown) => {
    await handle.stop()
    throw e
  })
}
