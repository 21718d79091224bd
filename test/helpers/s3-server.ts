/**
 * A real S3-compatible server on loopback for the remote-store tests and the bench: SeaweedFS's `weed
 * server` (master, volume, filer and S3 gateway in one process) with its own temp dir, free ports and
 * one identity with full access. Built once per machine by scripts/install-seaweedfs.sh (npm test runs
 * it through scripts/install-test-deps.sh) into ${ANNEAL_CACHE_DIR:-~/.cache/anneal}/seaweedfs-<version>/.
 *
 * Like the Slurm and Ray clusters (test/executors/*-cluster.ts): `s3Server()` returns the handle before
 * anything starts, so a test file registers `stop()` in afterAll first; `stop()` works at any moment and
 * ends every process the server started (marked through their environment), and a detached reaper ends
 * them if the test process itself is killed. Ready means a bucket was created and an object written and
 * read back through the S3 API, not that a port opened.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { S3Client } from "../../cache/remote/s3.ts"
import { freePorts, killOwnedNow, ownedProcesses, startReaper, stopOwned, waitFor } from "../executors/cluster-ports.ts"

export const SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"

export const weedBinary = (): string =>
  path.join(process.env.ANNEAL_CACHE_DIR ?? path.join(os.homedir(), ".cache", "anneal"), `seaweedfs-${SEAWEEDFS_VERSION}`, "bin", "weed")

export const weedInstalled = (): boolean => fs.existsSync(weedBinary())

export interface S3Server {
  /** http://127.0.0.1:<port>: what AWS_ENDPOINT_URL_S3 should say */
  readonly endpoint: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** the environment a child process needs to use this server (no other AWS settings leak in) */
  readonly env: Record<string, string>
  /** a client for the tests' own checks */
  readonly client: (bucket: string) => S3Client
  /** creates a bucket (idempotent) */
  readonly createBucket: (bucket: string) => Promise<void>
}

export interface S3ServerHandle {
  readonly start: (deadlineMs?: number) => Promise<S3Server>
  readonly stop: () => Promise<void>
}

export const s3StartDeadlineMs = 120_000

export const s3Server = (): S3ServerHandle => {
  const mark = `ANNEAL_TEST_S3=weed-${process.pid}-${randomBytes(4).toString("hex")}`
  const groups: Array<number> = []
  const dirs: Array<string> = []
  const clients: Array<S3Client> = []
  let stopped = false
  const find = () => ownedProcesses([mark], groups)
  const onExit = () => killOwnedNow(find)
  process.on("exit", onExit)
  const dismissReaper = startReaper([mark])

  const stop = async () => {
    stopped = true
    for (const c of clients.splice(0)) c.close()
    await stopOwned(find)
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
    process.off("exit", onExit)
    dismissReaper()
  }

  const start = async (deadlineMs = s3StartDeadlineMs): Promise<S3Server> => {
    if (!weedInstalled()) throw new Error(`SeaweedFS is not built at ${weedBinary()}: run bash scripts/install-seaweedfs.sh`)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-s3-"))
    dirs.push(dir)
    const accessKeyId = "ANNEALTEST" + randomBytes(5).toString("hex").toUpperCase()
    const secretAccessKey = randomBytes(20).toString("base64url")
    const config = path.join(dir, "s3.json")
    fs.writeFileSync(config, JSON.stringify({
      identities: [{ name: "anneal", credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ["Admin", "Read", "Write", "List", "Tagging"] }]
    }))
    const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc] = await freePorts(8)
    const data = path.join(dir, "data")
    fs.mkdirSync(data)
    const child = execa(weedBinary(), [
      "server",
      `-dir=${data}`,
      "-ip=127.0.0.1",
      "-ip.bind=127.0.0.1",
      `-master.port=${master}`,
      `-master.port.grpc=${masterGrpc}`,
      "-master.volumeSizeLimitMB=1024",
      `-volume.port=${volume}`,
      `-volume.port.grpc=${volumeGrpc}`,
      "-volume.max=0",
      "-filer",
      `-filer.port=${filer}`,
      `-filer.port.grpc=${filerGrpc}`,
      "-s3",
      `-s3.port=${s3}`,
      `-s3.port.grpc=${s3Grpc}`,
      // on by default at a fixed port (8181), which two servers at once would fight over
      "-s3.port.iceberg=0",
      `-s3.config=${config}`
    ], {
      env: { ...process.env, ANNEAL_TEST_S3: mark.slice(mark.indexOf("=") + 1) },
      detached: true,
      reject: false,
      stdin: "ignore",
      stdout: "ignore",
      stderr: { file: path.join(dir, "weed.log") }
    })
    if (child.pid !== undefined) groups.push(child.pid)
    let exited: string | undefined
    void child.then((r) => {
      exited = `weed exited ${r.exitCode ?? r.signal}`
    })
    const endpoint = `http://127.0.0.1:${s3}`
    const credentials = { accessKeyId, secretAccessKey, source: "test" }
    const client = (bucket: string) => {
      const c = new S3Client({ bucket, region: "us-east-1", endpoint, credentials })
      clients.push(c)
      return c
    }
    const createBucket = (bucket: string) => client(bucket).ensureBucket()
    try {
      // ready: a bucket can be made and an object written and read back
      await waitFor("SeaweedFS's S3 API", async () => {
        if (exited !== undefined) throw new Error(`${exited}: ${tail(path.join(dir, "weed.log"))}`)
        const c = client("anneal-ready")
        await c.ensureBucket()
        await c.putBytes("probe", "ok")
        return (await c.getBytes("probe"))?.toString() === "ok" ? true : undefined
      }, deadlineMs, 300, () => stopped || exited !== undefined)
    } catch (e) {
      const log = tail(path.join(dir, "weed.log"))
      await stopOwned(find)
      throw new Error(`${(e as Error).message}${exited !== undefined ? ` (${exited})` : ""}; weed.log: ${log}`)
    }
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      env: {
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_REGION: "us-east-1",
        AWS_SESSION_TOKEN: "",
        AWS_PROFILE: "",
        AWS_CONFIG_FILE: path.join(dir, "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "no-aws-credentials")
      },
      client,
      createBucket
    }
  }

  return { start, stop }
}

const tail = (file: string): string => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim() !== "").slice(-5).join(" | ")
  } catch {
    return "(no log)"
  }
}
