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
import { lastErrorLine, nodeBinary } from "../../engine/executors/cluster-executor.ts"
import { readRecord } from "../../engine/executors/cluster-job.ts"
import { makeRayBackend, makeRayExecutor, rayHeaders, redactAddress } from "../../engine/executors/ray.ts"
import { makeSlurmExecutor, sbatchArgs } from "../../engine/executors/slurm.ts"
import type { SlurmOptions } from "../../engine/executors/slurm.ts"
import { logsOf, makeStoreDir, respec, runSpec, workerSpec } from "./specs.ts"

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-fake-cluster-"))
const fakeBin = path.join(scratch, "bin")
const fakeState = path.join(scratch, "slurm")

const script = (file: string, body: string) => {
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

// sbatch runs the batch script in its --chdir with its output into --output, records the job's exit
// code, and prints the job id (its own pid: unique among jobs submitted at once); scontrol reports COMPLETED or FAILED from that code
const installFakeSlurm = () => {
  fs.mkdirSync(fakeBin, { recursive: true })
  fs.mkdirSync(fakeState, { recursive: true })
  script(path.join(fakeBin, "sbatch"), `
d="$FAKE_SLURM_DIR"
n=$$
printf '%s\\n' "$@" > "$d/$n.args"
out=/dev/null; dir=.; job=
for a in "$@"; do
  case "$a" in --output=*) out="\${a#--output=}" ;; --chdir=*) dir="\${a#--chdir=}" ;; esac
  job="$a"
done
(cd "$dir" && sh "$job") > "$out" 2>&1
echo $? > "$d/$n.rc"
echo "$n"`)
  script(path.join(fakeBin, "scontrol"), `
rc=$(cat "$FAKE_SLURM_DIR/$4.rc" 2>/dev/null) || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
if [ "$rc" = 0 ]; then state=COMPLETED; reason=None; else state=FAILED; reason=NonZeroExitCode; fi
echo "JobId=$4 JobName=x JobState=$state Reason=$reason ExitCode=$rc:0"`)
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
