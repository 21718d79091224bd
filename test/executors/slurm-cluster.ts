/**
 * A one-node Slurm cluster on loopback for the tests and the benchmark: munged with its own key and
 * socket, slurmctld and slurmd with a generated slurm.conf (8 CPUs, two fake GPUs as a `gpu` gres backed by
 * /dev/null and /dev/zero), everything under one temp directory. `stop()` cancels what is still
 * queued, then stops the three daemons by the pids they wrote, and removes the directory.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { freePorts, stopPids, waitFor } from "./cluster-ports.ts"

export interface SlurmCluster {
  readonly dir: string
  /** environment for Slurm's client commands (SLURM_CONF) */
  readonly env: Readonly<Record<string, string>>
  readonly slurmConf: string
  readonly partition: string
  readonly stop: () => Promise<void>
}

export const slurmInstalled = (): boolean =>
  ["sbatch", "slurmctld", "slurmd", "munged"].every((c) =>
    (process.env.PATH ?? "").split(":").concat(["/usr/sbin"]).some((d) => fs.existsSync(path.join(d, c)))
  )

const sbin = (name: string) => (fs.existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name)

export const startSlurm = async (): Promise<SlurmCluster> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-slurm-"))
  const pidFiles = ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"].map((f) => path.join(dir, f))
  const env = { SLURM_CONF: path.join(dir, "slurm.conf") }
  const stop = async () => {
    await execa("scancel", ["--full", "--user=root"], { env, reject: false, timeout: 10_000 })
    await waitFor("jobs to leave the queue", async () => {
      const r = await execa("squeue", ["-h", "-o", "%i"], { env, reject: false, timeout: 10_000 })
      return r.exitCode !== 0 || r.stdout.trim() === "" ? true : undefined
    }, 20_000).catch(() => undefined)
    const pids = pidFiles.flatMap((f) => {
      try {
        return [Number(fs.readFileSync(f, "utf8").trim())].filter((n) => Number.isInteger(n) && n > 0)
      } catch {
        return []
      }
    })
    await stopPids(pids)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  try {
    const mungeDir = path.join(dir, "munge")
    for (const d of ["state", "spool", "munge"]) fs.mkdirSync(path.join(dir, d), { recursive: true })
    fs.chmodSync(dir, 0o755)
    fs.chmodSync(mungeDir, 0o755)
    const key = path.join(mungeDir, "munge.key")
    fs.writeFileSync(key, Buffer.from(Array.from({ length: 1024 }, () => Math.floor(Math.random() * 256))), { mode: 0o400 })
    const socket = path.join(mungeDir, "munge.sock")
    await execa(sbin("munged"), [
      "--force",
      `--socket=${socket}`,
      `--key-file=${key}`,
      `--pid-file=${path.join(mungeDir, "munged.pid")}`,
      `--log-file=${path.join(mungeDir, "munged.log")}`,
      `--seed-file=${path.join(mungeDir, "munged.seed")}`
    ], { timeout: 20_000 })

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
    fs.writeFileSync(env.SLURM_CONF, conf.join("\n") + "\n")
    fs.writeFileSync(
      path.join(dir, "gres.conf"),
      "NodeName=annealnode Name=gpu File=/dev/null\nNodeName=annealnode Name=gpu File=/dev/zero\n"
    )
    await execa(sbin("slurmctld"), ["-f", env.SLURM_CONF], { env, timeout: 30_000 })
    await execa(sbin("slurmd"), ["-f", env.SLURM_CONF, "-N", "annealnode"], { env, timeout: 30_000 })
    await waitFor("the Slurm node to become idle", async () => {
      const r = await execa("sinfo", ["-h", "-N", "-o", "%T"], { env, reject: false, timeout: 10_000 })
      return /^idle/m.test(r.stdout) ? true : undefined
    }, 60_000)
    return { dir, env, slurmConf: env.SLURM_CONF, partition: "debug", stop }
  } catch (e) {
    const logs = ["slurmctld.log", "slurmd.log", "munge/munged.log"].map((f) => {
      try {
        return `--- ${f}\n` + fs.readFileSync(path.join(dir, f), "utf8").split("\n").slice(-15).join("\n")
      } catch {
        return ""
      }
    }).join("\n")
    await stop()
    throw new Error(`could not start a one-node Slurm cluster: ${(e as Error).message}\n${logs}`)
  }
}
