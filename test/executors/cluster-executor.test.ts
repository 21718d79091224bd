/**
 * What the cluster executors do around a job, without a cluster: a fake Slurm (sbatch, scontrol,
 * scancel, squeue as small shell scripts on PATH; sbatch runs the batch script at once, as a node
 * would) and a fake Ray Jobs API over https. They check what a user sees when a job fails before
 * anneal's runner starts (the cluster's own output kept in the step log, its real reason as the last
 * error line, never a library's internal message), that a retried job is a new attempt, that
 * `anneal plan` shows exactly the sbatch arguments a job gets, and that the Ray executor speaks https
 * with auth headers that end up nowhere but on the wire.
 */
import * as fs from "node:fs"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { describePlacement } from "../../engine/executor-config.ts"
import { lastErrorLine, makeClusterExecutor, nodeBinary } from "../../engine/executors/cluster-executor.ts"
import type { ClusterBackend, JobStatus } from "../../engine/executors/cluster-executor.ts"
import { attemptFiles, readRecord } from "../../engine/executors/cluster-job.ts"
import type { RunnerJob } from "../../engine/executors/cluster-job.ts"
import { makeRayBackend, makeRayExecutor, rayHeaders, redactAddress } from "../../engine/executors/ray.ts"
import { batchScript, makeSlurmExecutor, sbatchArgs } from "../../engine/executors/slurm.ts"
import { slurmShardRunner } from "../../engine/executors/shard-jobs.ts"
import { clean } from "../../steps/data/clean.ts"
import { setShardExecutor, shardCommand } from "../../steps/data/fanout.ts"
import { runStep } from "../steps/data/helpers.ts"
import type { SlurmOptions } from "../../engine/executors/slurm.ts"
import { projectRoot } from "../../engine/python.ts"
import { logsOf, makeStoreDir, outputFile, respec, runSpec, workerSpec } from "./specs.ts"
import type { Outcome } from "./specs.ts"

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-fake-cluster-"))
const fakeBin = path.join(scratch, "bin")
const fakeState = path.join(scratch, "slurm")

const script = (file: string, body: string) => {
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

// sbatch runs the batch script in its --chdir with its output into --output, records the job's exit
// code, and prints the job id (its own pid: unique among jobs submitted at once); scontrol reports COMPLETED or FAILED from that code.
// A file $FAKE_SLURM_DIR/endings/<key prefix>, one Slurm state a line, makes the key's next submissions end that
// way without running (NODE_FAIL, OUT_OF_MEMORY, FAILED...), one line per submission: a job that fails once, then runs.
const installFakeSlurm = () => {
  fs.mkdirSync(fakeBin, { recursive: true })
  fs.mkdirSync(path.join(fakeState, "endings"), { recursive: true })
  script(path.join(fakeBin, "sbatch"), `
d="$FAKE_SLURM_DIR"
n=$$
printf '%s\\n' "$@" > "$d/$n.args"
out=/dev/null; dir=.; job=; name=; array=
for a in "$@"; do
  case "$a" in --output=*) out="\${a#--output=}" ;; --chdir=*) dir="\${a#--chdir=}" ;; --job-name=*) name="\${a#--job-name=}" ;; --array=0-*) array="\${a#--array=0-}" ;; esac
  job="$a"
done
# a job array: its elements one after the other, each with its index, output and exit code
if [ -n "$array" ]; then
  for i in $(seq 0 "$array"); do
    (cd "$dir" && SLURM_ARRAY_TASK_ID=$i sh "$job") > "$(echo "$out" | sed "s/%a/$i/")" 2>&1
    echo $? > "$d/$n.$i.rc"
  done
  echo "$n"; exit 0
fi
for f in "$d"/endings/*; do
  [ -s "$f" ] || continue
  case "$name" in *"-\${f##*/}-a"*)
    head -n 1 "$f" > "$d/$n.state"; sed -i 1d "$f"; echo 1 > "$d/$n.rc"; echo "$n"; exit 0 ;;
  esac
done
(cd "$dir" && sh "$job") > "$out" 2>&1
echo $? > "$d/$n.rc"
echo "$n"`)
  script(path.join(fakeBin, "scontrol"), `
rc=$(cat "$FAKE_SLURM_DIR/$4.rc" 2>/dev/null) || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
if [ "$rc" = 0 ]; then state=COMPLETED; reason=None; else state=FAILED; reason=NonZeroExitCode; fi
[ -f "$FAKE_SLURM_DIR/$4.state" ] && { state=$(cat "$FAKE_SLURM_DIR/$4.state"); reason=None; }
echo "JobId=$4 JobName=x JobState=$state Reason=$reason ExitCode=$rc:0"`)
  // the container runtime: records its words, then runs what follows the image (a .sif), as apptainer exec would
  script(path.join(fakeBin, "apptainer"), `
printf '%s\\n' "$@" > "$FAKE_SLURM_DIR/apptainer.$$.args"
while [ $# -gt 0 ]; do case "$1" in *.sif) shift; break ;; *) shift ;; esac; done
export IN_FAKE_CONTAINER=1
exec "$@"`)
  script(path.join(fakeBin, "scancel"), "exit 0")
  script(path.join(fakeBin, "squeue"), "exit 0")
  process.env.PATH = `${fakeBin}:${process.env.PATH}`
  process.env.FAKE_SLURM_DIR = fakeState
}

const argsOf = (jobId: string) => fs.readFileSync(path.join(fakeState, `${jobId}.args`), "utf8").trim().split("\n")

const submittedJob = (messages: ReadonlyArray<string>) => {
  const m = messages.map((s) => /^submitted slurm job (\d+)/.exec(s)).find((x) => x !== null)
  if (m === undefined || m === null) throw new Error(`no submission among ${JSON.stringify(messages)}`)
  return m[1]!
}

const fast = { pollSeconds: 0.1, followSeconds: 0.05 }
/** the worker's own command on the node, no `anneal exec-step` around it: for tests about the job, not the runner */
const quick = { ...fast, launcher: "command" as const, fileWaitSeconds: 1 }

beforeAll(() => {
  installFakeSlurm()
})
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true })
})

describe.concurrent("a job that fails before anneal's runner starts", () => {
  it("a node binary missing on the node: the shell's words are the error, and Slurm's output stays in the step log", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store)
    const { error, events } = await runSpec(makeSlurmExecutor({ ...fast, node: "/nonexistent/node" }), spec)
    expect(error?.message).toMatch(/^slurm job \d+ FAILED: the step exited with an error, reason NonZeroExitCode, exit code 127 — .*\/nonexistent\/node: not found$/)
    const log = fs.readFileSync(spec.logPath, "utf8")
    expect(log).toMatch(/\[anneal\] slurm job \d+'s own output \(slurm\):\n.*\/nonexistent\/node: not found/)
    // the job's files are gone, its record remains for the next attempt
    const rec = readRecord(path.join(store, "jobs"), spec.key)
    expect(rec?.ended).toBe("FAILED")
    expect(fs.existsSync(rec!.attemptDir)).toBe(false)
    expect(logsOf(events).some((m) => m.startsWith("submitted slurm job"))).toBe(true)
  })

  it("a module missing on the node: Node's error line, not its stack or version footer", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store)
    const wrapper = script(path.join(scratch, "node-without-anneal"), `exec ${nodeBinary()} /nonexistent/engine/executors/cluster-runner.ts "$2"`)
    const { error } = await runSpec(makeSlurmExecutor({ ...fast, node: wrapper }), spec)
    expect(error?.message).toMatch(/ — Error( \[ERR_MODULE_NOT_FOUND\])?: Cannot find module '\/nonexistent\/engine\/executors\/cluster-runner\.ts'$/)
    expect(fs.readFileSync(spec.logPath, "utf8")).toContain("Node.js v")
  })

  it("a library's internal message is never the worker's last error line", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store)
    const wrapper = script(
      path.join(scratch, "node-interrupted"),
      `echo "boom: the real reason" >&2\necho "error: All fibers interrupted without error" >&2\nexit 1`
    )
    const { error } = await runSpec(makeSlurmExecutor({ ...fast, node: wrapper }), spec)
    expect(error?.message).toMatch(/ — boom: the real reason$/)
    expect(error?.message).not.toContain("fibers")
  })

  it("a retried job is a new attempt, with a name of its own", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store)
    const executor = () => makeSlurmExecutor({ ...fast, node: "/nonexistent/node" })
    const first = await runSpec(executor(), spec)
    const second = await runSpec(executor(), respec(store, spec))
    const third = await runSpec(executor(), respec(store, spec))
    const names = [first, second, third].map((o) => argsOf(submittedJob(logsOf(o.events))).find((a) => a.startsWith("--job-name="))!)
    expect(names.map((n) => /-a(\d+)$/.exec(n)?.[1])).toEqual(["1", "2", "3"])
    expect(logsOf(third.events).find((m) => m.startsWith("submitted "))).toMatch(/\(attempt 3\)$/)
    expect(readRecord(path.join(store, "jobs"), spec.key)?.attempt).toBe(3)
  })
})

describe("the sbatch arguments", () => {
  it("anneal plan shows exactly the arguments sbatch gets, memory from the config included", async () => {
    const slurm: SlurmOptions = {
      partition: "gpu",
      memoryGb: 3,
      timeLimit: "01:00:00",
      sbatchArgs: ["--constraint=ib"],
      steps: { train: { partition: "a100", timeLimit: "00:30:00" } }
    }
    const store = makeStoreDir()
    // the scheduler grants no memory figure when the step names none; the config's default applies
    const spec = workerSpec(store, { cpus: 2 })
    const { events } = await runSpec(makeSlurmExecutor({ ...slurm, ...fast, node: "/nonexistent/node" }), spec)
    const args = argsOf(submittedJob(logsOf(events)))
    const perJob = args.filter((a) => /^--(parsable|job-name|output|chdir)/.test(a) || a.endsWith("job.sh"))
    expect(perJob).toHaveLength(5)
    const shown = describePlacement("slurm", { slurm }, "train", "test-train", { gpus: 0, cpus: 2, memoryGb: 0 })
    expect(shown).toBe(`slurm: sbatch ${args.filter((a) => !perJob.includes(a)).join(" ")}`)
    expect(shown).toBe("slurm: sbatch --requeue --cpus-per-task=2 --mem=3072M --partition=a100 --time=00:30:00 --signal=B:USR1@120 --constraint=ib")
  })

  it("one function builds them for plan and for submission", () => {
    const resources = { gpus: 2, cpus: 0, memoryGb: 0 }
    // no memory figure anywhere: the per-CPU default (2 GiB), never a whole node's memory
    expect(sbatchArgs({ gpuType: "h100", requeue: false }, "sft", "sft", resources))
      .toEqual(["--no-requeue", "--cpus-per-task=1", "--mem-per-cpu=2048M", "--gres=gpu:h100:2", "--signal=B:USR1@120"])
    expect(sbatchArgs({}, "sft", "sft", { gpus: 0, cpus: 4, memoryGb: 1.5 }, { name: "anneal-sft-abc-a1", attemptDir: "/s/jobs/k/attempt-1" })).toEqual([
      "--parsable",
      "--job-name=anneal-sft-abc-a1",
      "--output=/s/jobs/k/attempt-1/cluster.out",
      "--chdir=/s/jobs/k/attempt-1",
      "--requeue",
      "--cpus-per-task=4",
      "--mem=1536M",
      "--signal=B:USR1@120",
      "/s/jobs/k/attempt-1/job.sh"
    ])
  })
})

/** Makes the key's next submissions end as the given Slurm states, one per submission, before the job runs. */
const endingsFor = (key: string, ...states: Array<string>) =>
  fs.writeFileSync(path.join(fakeState, "endings", key.slice(0, 12)), states.map((s) => s + "\n").join(""))

const submissionsOf = (events: Outcome["events"]) =>
  logsOf(events).flatMap((m) => /^submitted slurm job (\d+)/.exec(m)?.[1] ?? [])

// what a cluster job gets around the step, all at once: most of each test is waiting for a fake job
describe.concurrent("cluster jobs", () => {
  describe.concurrent("the retry policy", () => {
    it("a job lost with its node is submitted again and the step succeeds, resuming in the same resume dir", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store)
      endingsFor(spec.key, "NODE_FAIL")
      const { result, error, events } = await runSpec(makeSlurmExecutor(quick), spec)
      expect(error).toBeUndefined()
      expect(result?.metrics.final_loss).toBeCloseTo(2 / 3)
      expect(outputFile(spec)).toBe(" trained for 3 steps\n")
      const jobs = submissionsOf(events)
      expect(jobs).toHaveLength(2)
      expect(logsOf(events).find((m) => m.includes("retrying"))).toMatch(/NODE_FAIL: its node failed; retrying \(node-failure, retry 1 of 2\)$/)
      expect(argsOf(jobs[1]!).find((a) => a.startsWith("--job-name="))).toMatch(/-a2$/)
    })

    it("gives up after maxRetries", async () => {
      const store = makeStoreDir()
      const lost = workerSpec(store)
      endingsFor(lost.key, "NODE_FAIL", "NODE_FAIL", "NODE_FAIL")
      const once = await runSpec(makeSlurmExecutor({ ...quick, retry: { maxRetries: 1 } }), lost)
      expect(submissionsOf(once.events)).toHaveLength(2)
      expect(once.error?.message).toMatch(/NODE_FAIL: its node failed/)
    })

    it("never retries the step's own error by default, but does when the policy names step-error", async () => {
      const store = makeStoreDir()
      const broken = workerSpec(store)
      endingsFor(broken.key, "FAILED")
      const notRetried = await runSpec(makeSlurmExecutor(quick), broken)
      expect(submissionsOf(notRetried.events)).toHaveLength(1)
      expect(notRetried.error?.message).toMatch(/FAILED: the step exited with an error/)

      const flaky = workerSpec(store)
      endingsFor(flaky.key, "FAILED")
      const retried = await runSpec(makeSlurmExecutor({ ...quick, retry: { on: ["step-error"] } }), flaky)
      expect(retried.error).toBeUndefined()
      expect(submissionsOf(retried.events)).toHaveLength(2)
    })

    it("never retries a job cancelled from outside, whatever the policy", async () => {
      const store = makeStoreDir()
      const cancelled = workerSpec(store)
      endingsFor(cancelled.key, "CANCELLED")
      const never = await runSpec(makeSlurmExecutor({ ...quick, retry: { on: ["node-failure", "preemption", "timeout", "oom", "step-error"] } }), cancelled)
      expect(submissionsOf(never.events)).toHaveLength(1)
      expect(never.error?.message).toMatch(/CANCELLED: cancelled from outside anneal/)
    })

    it("after running out of memory the retry asks for more (memoryFactor), after a timeout for more time (timeFactor)", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { memoryGb: 2 })
      endingsFor(spec.key, "OUT_OF_MEMORY", "TIMEOUT")
      const { error, events } = await runSpec(makeSlurmExecutor({ ...quick, timeLimit: "01:00:00", retry: { memoryFactor: 2, timeFactor: 1.5 } }), spec)
      expect(error).toBeUndefined()
      const jobs = submissionsOf(events).map(argsOf)
      expect(jobs.map((a) => a.find((x) => x.startsWith("--mem=")))).toEqual(["--mem=2048M", "--mem=4096M", "--mem=4096M"])
      expect(jobs.map((a) => a.find((x) => x.startsWith("--time=")))).toEqual(["--time=01:00:00", "--time=01:00:00", "--time=01:30:00"])
    })
  })

  describe.concurrent("the job's environment", () => {
    it("setup lines run in the batch script before the step; a failing one stops the job with its own words", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store)
      const marker = path.join(store, "setup-ran")
      const ok = await runSpec(makeSlurmExecutor({ ...quick, setup: ["ANNEAL_SETUP_WORD=ready", `echo "$ANNEAL_SETUP_WORD" > ${marker}`] }), spec)
      expect(ok.error).toBeUndefined()
      expect(fs.readFileSync(marker, "utf8").trim()).toBe("ready")

      const other = workerSpec(store)
      const bad = await runSpec(makeSlurmExecutor({ ...quick, setup: ["module-that-is-not-here load cuda/12.4"] }), other)
      expect(bad.error?.message).toMatch(/— .*module-that-is-not-here: not found$/)
      expect(fs.existsSync(path.join(other.resumeDir, "worker.pid"))).toBe(false)
    })

    it("the batch script: setup under set -e, then the runner inside apptainer with the project, the store and the recipe bound", () => {
      const text = batchScript(
        { setup: ["module load cuda/12.4"], container: { image: "/images/anneal.sif", binds: ["/scratch"] } },
        { step: "sft", key: "k", command: ["/opt/node", "/p/cluster-runner.ts", "/s/jobs/k/attempt-1/job.json"], binds: ["/p", "/s"], gpus: 2 }
      )
      expect(text.split("\n")).toEqual([
        "#!/bin/sh",
        "# anneal step sft (key k), written by the Slurm executor",
        "set -e",
        "module load cuda/12.4",
        "set +e",
        "exec apptainer exec --nv --bind /p --bind /s --bind /scratch /images/anneal.sif /opt/node /p/cluster-runner.ts /s/jobs/k/attempt-1/job.json",
        ""
      ])
      const pyxis = batchScript({ container: { image: "nvcr.io#nvidia/pytorch:24.05-py3", runtime: "pyxis" } }, {
        step: "sft", key: "k", command: ["/opt/node", "r.ts", "j.json"], binds: ["/p", "/s"], gpus: 0
      })
      expect(pyxis).toContain("exec srun --ntasks=1 '--container-image=nvcr.io#nvidia/pytorch:24.05-py3' --container-mounts=/p:/p,/s:/s --no-container-remap-root /opt/node r.ts j.json\n")
    })

    it("a step with a container runs through the runtime, which is given the store and the project", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store)
      const image = path.join(scratch, "anneal.sif")
      const before = new Set(fs.readdirSync(fakeState))
      const { error, events } = await runSpec(makeSlurmExecutor({ ...quick, container: { image } }), spec)
      expect(error).toBeUndefined()
      const recorded = fs.readdirSync(fakeState).filter((f) => f.startsWith("apptainer.") && !before.has(f))
        .map((f) => fs.readFileSync(path.join(fakeState, f), "utf8").trim().split("\n"))
        .find((a) => a.some((w) => w.endsWith(".json") && w.includes(spec.key)))
      expect(recorded?.slice(0, 1)).toEqual(["exec"])
      expect(recorded).toContain(image)
      const binds = recorded!.flatMap((w, i) => (recorded![i - 1] === "--bind" ? [w] : []))
      expect(binds).toEqual(expect.arrayContaining([projectRoot, path.resolve(store)]))
      expect(submissionsOf(events)).toHaveLength(1)
    })

    it("memory: the step's figure as --mem, else the per-CPU default as --mem-per-cpu, never nothing (a whole node)", async () => {
      const store = makeStoreDir()
      const plain = await runSpec(makeSlurmExecutor(quick), workerSpec(store, { cpus: 2 }))
      expect(argsOf(submissionsOf(plain.events)[0]!)).toContain("--mem-per-cpu=2048M")
      const configured = await runSpec(makeSlurmExecutor({ ...quick, memoryPerCpuGb: 3 }), workerSpec(store, { cpus: 2 }))
      expect(argsOf(submissionsOf(configured.events)[0]!)).toContain("--mem-per-cpu=3072M")
      const declared = await runSpec(makeSlurmExecutor({ ...quick, memoryPerCpuGb: 3 }), workerSpec(store, { memoryGb: 5 }))
      const args = argsOf(submissionsOf(declared.events)[0]!)
      expect(args).toContain("--mem=5120M")
      expect(args.some((a) => a.startsWith("--mem-per-cpu"))).toBe(false)
      expect(sbatchArgs({ gpuType: "a100", gpuFlag: "gpus" }, "sft", "sft", { gpus: 4, cpus: 8 })).toContain("--gpus-per-node=a100:4")
    })
  })

  describe("polling that scales", () => {
    it("follows 40 running jobs with one batched query per poll, never one per job", async () => {
      const store = makeStoreDir()
      const calls = { one: 0, many: 0, largest: 0 }
      const jobs = new Map<string, { readonly until: number; readonly attemptDir: string }>()
      const state = (id: string): JobStatus => {
        const job = jobs.get(id)!
        if (Date.now() < job.until) return { phase: "running", state: "RUNNING" }
        // the job ran: it left its output and exit status, as the runner does
        const files = attemptFiles(job.attemptDir)
        fs.mkdirSync(files.output, { recursive: true })
        fs.writeFileSync(path.join(files.output, "model.txt"), id)
        fs.writeFileSync(files.exit, JSON.stringify({ code: 0, signal: null, host: "n1", at: "" }))
        return { phase: "succeeded", state: "COMPLETED", exitCode: 0 }
      }
      let next = 0
      const backend: ClusterBackend = {
        name: "fake",
        label: (id) => `fake job ${id}`,
        submit: async (req) => {
          const id = String(++next)
          jobs.set(id, { until: Date.now() + 1500, attemptDir: req.attemptDir })
          return id
        },
        status: async (id) => {
          calls.one += 1
          return state(id)
        },
        statusMany: async (ids) => {
          calls.many += 1
          calls.largest = Math.max(calls.largest, ids.length)
          return new Map(ids.map((id) => [id, state(id)]))
        },
        cancel: async () => {}
      }
      const executor = makeClusterExecutor(backend, { pollSeconds: 0.2, followSeconds: 0.05 })
      const outcomes = await Promise.all(Array.from({ length: 40 }, () => runSpec(executor, workerSpec(store))))
      expect(outcomes.filter((o) => o.error !== undefined)).toEqual([])
      expect(calls.one).toBe(0)
      // about 1.5 s / 0.2 s polls: one query each, where 40 jobs asked alone would make ~300
      expect(calls.many).toBeLessThan(40)
      expect(calls.largest).toBeGreaterThanOrEqual(20)
    })
  })

  describe("data-step fan-out on Slurm", () => {
    it("a data step's shard tasks run as one job array, and the artifact is the same bytes as a fan-out on this machine", async () => {
      const dir = fs.mkdtempSync(path.join(scratch, "shards-"))
      const rows = Array.from({ length: 300 }, (_, i) => ({ instruction: `question ${i} ${"word ".repeat(i % 9)}`, input: "", output: `answer ${i % 50}` }))
      const data = path.join(dir, "in.jsonl")
      fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
      const before = new Set(fs.readdirSync(fakeState))
      const previous = setShardExecutor(slurmShardRunner(fast, shardCommand, [projectRoot]))
      let onSlurm: Awaited<ReturnType<typeof runStep>>
      try {
        onSlurm = await runStep(clean, { data }, { minWords: 8, tasks: 3 })
      } finally {
        setShardExecutor(previous)
      }
      const here = await runStep(clean, { data }, { minWords: 8, tasks: 3 })
      const files = (d: string) => fs.readdirSync(d, { recursive: true }).map(String).sort().map((f) => [f, fs.statSync(path.join(d, f)).isFile() ? fs.readFileSync(path.join(d, f), "utf8") : ""])
      expect(files(onSlurm.output)).toEqual(files(here.output))
      expect(onSlurm.metrics.removed).toBeGreaterThan(0)
      // one sbatch with --array=0-2, whose three elements all exited 0
      const submitted = fs.readdirSync(fakeState).filter((f) => f.endsWith(".args") && !before.has(f)).map((f) => f.replace(/\.args$/, ""))
        .filter((id) => argsOf(id).some((a) => a.startsWith("--array=")))
      expect(submitted).toHaveLength(1)
      expect(argsOf(submitted[0]!)).toContain("--array=0-2")
      expect([0, 1, 2].map((i) => fs.readFileSync(path.join(fakeState, `${submitted[0]}.${i}.rc`), "utf8").trim())).toEqual(["0", "0", "0"])
    })
  })

  describe("Slurm's warning before the time limit", () => {
    it("SIGUSR1 to the runner becomes a checkpoint request that the step's Python sees (protocol.checkpoint_requested)", async () => {
      const dir = fs.mkdtempSync(path.join(scratch, "usr1-"))
      const files = attemptFiles(dir)
      const python = [
        "import time, sys",
        "from anneal_worker.protocol import checkpoint_requested",
        "print('before', checkpoint_requested(), flush=True)",
        "deadline = time.time() + 60",
        "while not checkpoint_requested() and time.time() < deadline: time.sleep(0.05)",
        "print('after', checkpoint_requested(), flush=True)"
      ].join("\n")
      const job: RunnerJob = {
        argv: ["python3", "-c", python],
        env: { PYTHONPATH: path.join(projectRoot, "python"), ANNEAL_CHECKPOINT_REQUEST: files.checkpointRequest },
        cwd: dir,
        spec: files.spec,
        output: files.output,
        events: files.events,
        log: files.log,
        exit: files.exit,
        gpus: 0
      }
      fs.writeFileSync(files.job, JSON.stringify(job))
      const runner = execa(nodeBinary(), [path.join(projectRoot, "engine", "executors", "cluster-runner.ts"), files.job], { reject: false })
      try {
        // the runner is listening once the step printed its first line
        const started = () => fs.existsSync(files.events) && fs.readFileSync(files.events, "utf8").includes("before False")
        for (let i = 0; i < 1200 && !started(); i++) await new Promise((ok) => setTimeout(ok, 50))
        runner.kill("SIGUSR1")
        const r = await runner
        expect(r.exitCode).toBe(0)
        expect(fs.readFileSync(files.events, "utf8")).toBe("before False\nafter True\n")
        expect(r.stderr).toContain("anneal runner: SIGUSR1, the time limit is near: asking the step for a checkpoint")
      } finally {
        runner.kill("SIGKILL")
      }
    })
  })
})

describe("the worker's last error line", () => {
  it("is the last error-like line, past stack frames, footers and internal messages", () => {
    expect(lastErrorLine(["Traceback (most recent call last):", '  File "w.py", line 3', "ModuleNotFoundError: No module named 'torch'"]))
      .toBe("ModuleNotFoundError: No module named 'torch'")
    expect(lastErrorLine(["Error: Cannot find module '/x'", "    at Module._resolveFilename (node:internal)", "", "Node.js v24.1.0"]))
      .toBe("Error: Cannot find module '/x'")
    expect(lastErrorLine(["step 3 of 9", "error: All fibers interrupted without error"])).toBe("step 3 of 9")
    expect(lastErrorLine(["All fibers interrupted without error"])).toBeUndefined()
    expect(lastErrorLine(["[anneal] submitted slurm job 4"])).toBeUndefined()
    // a Ray job's log: Ray's own lines around the shell's
    expect(lastErrorLine([
      "2026-12-01 22:45:29,679\tINFO job_manager.py:581 -- Runtime env is setting up.",
      "/bin/sh: 1: /nonexistent/node: not found",
      "Running entrypoint for job anneal-train-3a14-a1-5ddc: /nonexistent/node runner.ts job.json"
    ])).toBe("/bin/sh: 1: /nonexistent/node: not found")
  })
})

// --- Ray over https with auth headers -------------------------------------------------------------

interface FakeRay {
  readonly address: string
  readonly ca: string
  readonly requests: Array<{ method: string; url: string; headers: Record<string, string | Array<string> | undefined>; body: string }>
  readonly close: () => Promise<void>
}

/** A Jobs API that accepts jobs and reports each failed with an entrypoint error and a log. */
const startFakeRay = async (): Promise<FakeRay> => {
  const dir = fs.mkdtempSync(path.join(scratch, "tls-"))
  const key = path.join(dir, "key.pem")
  const cert = path.join(dir, "cert.pem")
  await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"], { stdin: "ignore" })
  const requests: FakeRay["requests"] = []
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8")
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body })
      res.setHeader("content-type", "application/json")
      if (req.headers.authorization !== "Bearer s3cret-token") {
        res.statusCode = 401
        res.end(JSON.stringify({ error: "unauthorized" }))
      } else if (req.method === "POST" && req.url === "/ray/api/jobs/") {
        res.end(JSON.stringify({ submission_id: (JSON.parse(body) as { submission_id: string }).submission_id }))
      } else if (req.method === "GET" && req.url?.endsWith("/logs") === true) {
        res.end(JSON.stringify({ logs: "/bin/sh: 1: /nonexistent/node: not found\n" }))
      } else if (req.method === "GET" && req.url?.startsWith("/ray/api/jobs/") === true) {
        res.end(JSON.stringify({ status: "FAILED", error_type: "JOB_ENTRYPOINT_COMMAND_ERROR", driver_exit_code: 127, message: "Job entrypoint command failed with exit code 127" }))
      } else {
        res.statusCode = 404
        res.end("{}")
      }
    })
  })
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok))
  const port = (server.address() as { port: number }).port
  return {
    address: `https://127.0.0.1:${port}/ray`,
    ca: cert,
    requests,
    close: () => new Promise((ok) => {
      server.closeAllConnections()
      server.close(() => ok())
    })
  }
}

/** Every file under a directory, as text. */
const allText = (dir: string): string =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => fs.readFileSync(path.join(e.parentPath, e.name), "utf8"))
    .join("\n")

describe("the Ray executor over https", () => {
  let ray: FakeRay | undefined
  beforeAll(async () => {
    ray = await startFakeRay()
  })
  afterAll(async () => {
    await ray?.close()
  })

  it("sends the configured and RAY_JOB_HEADERS headers, trusts caFile, keeps Ray's job log, and writes no secret anywhere", async () => {
    process.env.ANNEAL_TEST_RAY_TOKEN = "s3cret-token"
    process.env.RAY_JOB_HEADERS = JSON.stringify({ "X-Team": "nlp" })
    try {
      const store = makeStoreDir()
      const spec = workerSpec(store)
      const executor = makeRayExecutor({
        ...fast,
        address: ray!.address,
        caFile: ray!.ca,
        headers: { Authorization: "Bearer ${ANNEAL_TEST_RAY_TOKEN}" }
      })
      const { error } = await runSpec(executor, spec)
      expect(error?.message).toMatch(/^ray job \S+-a1-\w+ FAILED: the step exited with an error, exit code 127 — \/bin\/sh: 1: \/nonexistent\/node: not found$/)
      const posts = ray!.requests.filter((r) => r.method === "POST")
      expect(posts).toHaveLength(1)
      expect(posts[0]!.headers.authorization).toBe("Bearer s3cret-token")
      expect(posts[0]!.headers["x-team"]).toBe("nlp")
      expect(fs.readFileSync(spec.logPath, "utf8")).toContain("/bin/sh: 1: /nonexistent/node: not found")
      expect(allText(store)).not.toContain("s3cret-token")

      // the retry is attempt 2
      const again = await runSpec(executor, respec(store, spec))
      expect(again.error?.message).toMatch(/^ray job \S+-a2-\w+ FAILED/)
    } finally {
      delete process.env.ANNEAL_TEST_RAY_TOKEN
      delete process.env.RAY_JOB_HEADERS
    }
  })

  it("says which header variable is missing, and never shows a password in the address", async () => {
    const noVar = makeRayBackend({ address: ray!.address, caFile: ray!.ca, headers: { Authorization: "Bearer ${ANNEAL_TEST_UNSET_TOKEN}" } })
    await expect(noVar.status("x")).rejects.toThrow("ray.headers.Authorization names ${ANNEAL_TEST_UNSET_TOKEN}, which is not set")
    const unreachable = makeRayBackend({ address: "https://alice:hunter2@127.0.0.1:1" })
    const message = await unreachable.status("x").then(() => "", (e: Error) => e.message)
    expect(message).toContain("cannot reach the Ray Jobs API at https://***@127.0.0.1:1")
    expect(message).not.toContain("hunter2")
    expect(redactAddress("http://head:8265")).toBe("http://head:8265")
    expect(() => rayHeaders(undefined, { RAY_JOB_HEADERS: "[1]" })).toThrow("RAY_JOB_HEADERS is not a JSON object")
    expect(() => makeRayBackend({ address: "head-node:8265" })).toThrow("must start with http:// or https://")
  })
})
