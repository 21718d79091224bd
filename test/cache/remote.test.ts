/**
 * The remote store against a real S3 server (SeaweedFS on loopback, test/helpers/s3-server.ts): what a
 * user of `--remote s3://...` notices. A build on one store is restored on another without running a
 * step; a driver killed mid-upload leaves nothing visible and a rerun completes the upload; two drivers
 * racing on the same keys converge; a remote gc keeps what a live run has pinned; a remote that refuses
 * the credentials or does not answer is a one-line error naming it, with nothing written to the store.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import { hashTree } from "../../cache/hash.ts"
import { collectOutput, ensureUploaded, publishOutput, stageInputs } from "../../cache/remote/node-io.ts"
import { RemoteStore } from "../../cache/remote/remote-store.ts"
import { parseRemote } from "../../cache/remote/url.ts"
import { Store } from "../../cache/store.ts"
import type { StepSpec } from "../../engine/spec.ts"
import { annealBin, annealIndex, cli, nodeBin, parseEvents, ranSteps, statuses, stepEvents, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { s3Server, weedInstalled } from "../helpers/s3-server.ts"
import type { S3Server } from "../helpers/s3-server.ts"
import { freePort, waitFor } from "../executors/cluster-ports.ts"

const recipeText = `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}

// deterministic bytes: the same params and source give the same artifact on every machine
const make = defineStep({
  kind: "remote-make", version: 1,
  params: Schema.Struct({ files: Schema.Int, kb: Schema.Int, salt: Schema.Int }),
  inputs: { data: Port.files() }, output: Port.files(),
  run: (ctx) => {
    const text = fs.readFileSync(ctx.inputs.data, "utf8")
    for (let i = 0; i < ctx.params.files; i++) {
      const d = path.join(ctx.output, "d" + (i % 7))
      fs.mkdirSync(d, { recursive: true })
      const line = ctx.params.salt + ":" + i + ":" + text
      fs.writeFileSync(path.join(d, "part-" + i + ".txt"), line.repeat(Math.max(1, Math.ceil(ctx.params.kb * 1024 / line.length))))
    }
  }
})

const use = defineStep({
  kind: "remote-use", version: 1,
  params: Schema.Struct({ waitFor: Schema.String }),
  executionOnly: ["waitFor"],
  inputs: { parts: Port.files() }, output: Port.files(),
  run: async (ctx) => {
    while (ctx.params.waitFor !== "" && !fs.existsSync(ctx.params.waitFor)) {
      if (ctx.signal.aborted) throw new Error("interrupted")
      await new Promise((ok) => setTimeout(ok, 50))
    }
    let n = 0
    const walk = (d: string) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(path.join(d, e.name)) : n++ }
    walk(ctx.inputs.parts)
    fs.writeFileSync(path.join(ctx.output, "summary.txt"), n + " files")
  }
})

const files = Number(process.env.REMOTE_TEST_FILES ?? "20")
const kb = Number(process.env.REMOTE_TEST_KB ?? "4")
export default recipe("remote", () => {
  const parts = make({ data: source.files("data.txt") }, { files, kb, salt: Number(process.env.REMOTE_TEST_SALT ?? "1") }, { id: "make" })
  use({ parts }, { waitFor: process.env.REMOTE_TEST_WAIT ?? "" }, { id: "use" })
})
`

const project = (): TempProject => {
  const p = tempProject("anneal-remote-")
  p.write("data.txt", "remote store test data\n")
  p.write("recipe.ts", recipeText)
  return p
}

const handle = s3Server()
let server: S3Server
let bucketN = 0

/** A fresh bucket per test, so tests never see each other's objects. */
const freshRemote = async (): Promise<{ url: string; bucket: string }> => {
  const bucket = `anneal-t${process.pid}-${++bucketN}`
  await server.createBucket(bucket)
  return { url: `s3://${bucket}/cache`, bucket }
}

const run = (p: TempProject, store: string, remote: string, env: Record<string, string> = {}, extra: ReadonlyArray<string> = []) =>
  cli(["run", p.file("recipe.ts"), "--json", "--store", p.file(store), "--remote", remote, ...extra], { env: { ...server.env, ...env } })

const keysUnder = async (bucket: string, prefix: string) => (await server.client(bucket).list(prefix)).map((o) => o.key)

const artifactHashes = (p: TempProject, store: string) =>
  fs.existsSync(p.file(`${store}/artifacts`)) ? fs.readdirSync(p.file(`${store}/artifacts`)).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort() : []

describe.skipIf(!weedInstalled())("remote store on S3 (SeaweedFS)", () => {
  beforeAll(async () => {
    server = await handle.start()
  }, 180_000)
  afterAll(() => handle.stop(), 60_000)

  test("a build on store A is restored on store B: no step runs, outputs equal, plan says so first", async () => {
    const p = project()
    const { url, bucket } = await freshRemote()
    const a = await run(p, "A", url)
    expect(a.exitCode, a.stderr).toBe(0)
    expect(ranSteps(a.events)).toEqual(["make", "use"])
    expect((await keysUnder(bucket, "cache/index/")).length).toBe(2)

    const plan = await cli(["plan", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url], { env: server.env })
    expect(plan.exitCode, plan.stderr).toBe(0)
    const planned = plan.stdout.split("\n").filter((l) => l.includes('"event":"plan"')).map((l) => JSON.parse(l) as { step: string; status: string; reasons: Array<string> })
    expect(planned.map((e) => [e.step, e.status])).toEqual([["make", "cached"], ["use", "cached"]])
    expect(planned[0]!.reasons.join(" ")).toContain(url)

    const b = await run(p, "B", url)
    expect(b.exitCode, b.stderr).toBe(0)
    expect(ranSteps(b.events)).toEqual([])
    expect(statuses(b.events)).toEqual({ make: "cached", use: "cached" })
    const outA = Object.fromEntries(stepEvents(a.events).map((e) => [e.step, e.output]))
    const outB = Object.fromEntries(stepEvents(b.events).map((e) => [e.step, e.output]))
    expect(outB).toEqual(outA)
    // the restored artifacts are really there, and hash to their names
    for (const h of Object.values(outB)) expect(hashTree(p.file(`B/artifacts/${h}`)).hash).toBe(h)
    // and a second run on B is a plain local null run
    const again = await run(p, "B", url)
    expect(ranSteps(again.events)).toEqual([])

    // a blob whose bytes no longer match its name (same size): store C refuses it, builds that step,
    // and its upload repairs the remote
    const useManifest = JSON.parse((await server.client(bucket).getBytes(`cache/artifacts/${outA.use}.json`))!.toString()) as { files: Array<[string, number, string]> }
    const [, size, sha] = useManifest.files[0]!
    await server.client(bucket).putBytes(`cache/blobs/${sha}`, Buffer.alloc(size, "x"), "application/octet-stream")
    const c = await run(p, "C", url)
    expect(c.exitCode, c.stderr).toBe(0)
    expect(ranSteps(c.events)).toEqual(["use"])
    expect(c.stdout).toContain("building it instead")
    expect(Object.fromEntries(stepEvents(c.events).map((e) => [e.step, e.output]))).toEqual(outA)
    const verify = await cli(["cache", "verify", "--store", p.file("C"), "--remote", url], { env: server.env })
    expect(verify.exitCode, verify.stdout).toBe(0)
    const d = await run(p, "D", url)
    expect(ranSteps(d.events)).toEqual([])
  }, 120_000)

  test("kill -9 mid-upload leaves no artifact or key visible; a rerun finishes the upload and B restores", async () => {
    const p = project()
    const { url, bucket } = await freshRemote()
    // ~25 MB in 800 files: 800 HEAD + PUT pairs, a window far longer than the 20 ms poll below between
    // the driver's first blob and its manifest
    const env = { ...server.env, REMOTE_TEST_FILES: "800", REMOTE_TEST_KB: "32" }
    const child = execa(nodeBin, [annealBin, "run", p.file("recipe.ts"), "--json", "--store", p.file("A"), "--remote", url, "make"], {
      env, reject: false, stdin: "ignore"
    })
    try {
      const client = server.client(bucket)
      await waitFor("the first blob to be uploaded", async () => ((await client.listPage("cache/blobs/", 1)).length > 0 ? true : undefined), 90_000, 20)
      child.kill("SIGKILL")
      await child
      // the crash left blobs, but no manifest and no index entry: nothing anyone would restore
      expect(await keysUnder(bucket, "cache/artifacts/")).toEqual([])
      expect(await keysUnder(bucket, "cache/index/")).toEqual([])
    } finally {
      child.kill("SIGKILL")
    }
    const verify = await cli(["cache", "verify", "--store", p.file("A"), "--remote", url], { env })
    expect(verify.stdout).toContain("0 problems")
    // B sees nothing to restore and would build
    const plan = await cli(["plan", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url, "make"], { env })
    expect(plan.stdout).toContain('"status":"stale"')
    // the rerun on A completes (the step itself may have been committed before the kill) and uploads it
    const rerun = await cli(["run", p.file("recipe.ts"), "--json", "--store", p.file("A"), "--remote", url, "make"], { env })
    expect(rerun.exitCode, rerun.stderr).toBe(0)
    expect((await keysUnder(bucket, "cache/artifacts/")).length).toBe(1)
    const b = await cli(["run", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url, "make"], { env })
    expect(b.exitCode, b.stderr).toBe(0)
    expect(ranSteps(b.events)).toEqual([])
    expect(artifactHashes(p, "B")).toEqual(artifactHashes(p, "A"))
    // gc on the remote removes the blobs only the killed upload left (nothing else: the rest is referenced)
    const gc = await cli(["cache", "gc", "--store", p.file("A"), "--remote", url, "--json"], { env })
    expect(gc.exitCode, gc.stderr).toBe(0)
    const after = await cli(["cache", "verify", "--store", p.file("A"), "--remote", url], { env })
    expect(after.exitCode, after.stdout).toBe(0)
  }, 180_000)

  test("two drivers racing to upload the same keys converge on one intact copy", async () => {
    const p = project()
    const { url, bucket } = await freshRemote()
    const env = { ...server.env, REMOTE_TEST_FILES: "60" }
    const [one, two] = await Promise.all(["A1", "A2"].map((s) => cli(["run", p.file("recipe.ts"), "--json", "--store", p.file(s), "--remote", url], { env })))
    expect(one!.exitCode, one!.stderr).toBe(0)
    expect(two!.exitCode, two!.stderr).toBe(0)
    expect(stepEvents(one!.events).map((e) => e.output)).toEqual(stepEvents(two!.events).map((e) => e.output))
    expect((await keysUnder(bucket, "cache/artifacts/")).length).toBe(2)
    expect((await keysUnder(bucket, "cache/index/")).length).toBe(2)
    const verify = await cli(["cache", "verify", "--store", p.file("A1"), "--remote", url], { env })
    expect(verify.exitCode, verify.stdout).toBe(0)
    const b = await cli(["run", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url], { env })
    expect(ranSteps(b.events)).toEqual([])
  }, 120_000)

  test("gc on the remote keeps what a live run pinned, and collects it once that run is over", async () => {
    const p = project()
    const { url, bucket } = await freshRemote()
    const a = await run(p, "A", url, {}, ["make"])
    expect(a.exitCode, a.stderr).toBe(0)
    const makeHash = stepEvents(a.events).find((e) => e.step === "make")!.output!
    // B restores make from the remote (pinning it), then holds in `use` until the file appears
    const gate = p.file("gate")
    const b = execa(nodeBin, [annealBin, "run", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url], {
      env: { ...server.env, REMOTE_TEST_WAIT: gate }, reject: false, stdin: "ignore"
    })
    let seen = ""
    b.stdout?.on("data", (c: Buffer) => {
      seen += c.toString()
    })
    try {
      await waitFor("B to start use", () => (seen.includes('"event":"started","step":"use"') ? true : undefined), 90_000, 100)
      // a gc from a third machine that uses nothing, told to drop every key, still keeps the pinned artifact
      const gc = await cli(["cache", "gc", "--store", p.file("C"), "--remote", url, "--remote-max-age-days", "0"], { env: server.env })
      expect(gc.stdout).toContain("only because a live run pins them")
      expect(await keysUnder(bucket, `cache/artifacts/${makeHash}.json`)).toEqual([`cache/artifacts/${makeHash}.json`])
      fs.writeFileSync(gate, "go")
      const done = await b
      expect(done.exitCode, String(done.stderr)).toBe(0)
      expect(statuses(parseEvents(String(done.stdout)))).toEqual({ make: "cached", use: "ran" })
    } finally {
      b.kill("SIGKILL")
    }
    // the run is over and no key names make's artifact any more: now it goes
    const gc2 = await cli(["cache", "gc", "--store", p.file("C"), "--remote", url, "--remote-max-age-days", "0", "--json"], { env: server.env })
    expect(gc2.exitCode, gc2.stderr).toBe(0)
    expect(await keysUnder(bucket, `cache/artifacts/${makeHash}.json`)).toEqual([])
  }, 180_000)

  test("a step on a node without the driver's store: inputs pulled from the remote, output published and collected", async () => {
    const p = tempProject("anneal-remote-node-")
    const { url } = await freshRemote()
    const saved = { ...process.env }
    // files over 5 MB go up in parts here, so the multipart path is exercised on a small file
    const env = { ...server.env, ANNEAL_S3_MULTIPART_MB: "5" }
    Object.assign(process.env, env)
    const driver = Store.open(p.file("driver"))
    const node = Store.open(p.file("node"))
    const remote = await RemoteStore.open(parseRemote(url))
    try {
      const staging = driver.newStaging("in")
      fs.mkdirSync(path.join(staging, "sub"))
      fs.writeFileSync(path.join(staging, "sub", "rows.jsonl"), '{"text":"a"}\n{"text":"b"}\n')
      fs.writeFileSync(path.join(staging, "weights.bin"), Buffer.alloc(11 * 2 ** 20, "anneal"))
      const input = await driver.commit(staging, "dataset", { step: "data" })
      const spec = { inputs: { data: driver.artifactPath(input.hash), src: p.file("data.txt") }, inputHashes: { data: input.hash, src: "0".repeat(64) } } as unknown as StepSpec
      await ensureUploaded(remote, driver, spec)
      // the node: its own store, nothing shared with the driver but the bucket
      const onNode = await stageInputs(remote, node, spec, driver)
      expect(onNode.inputs.data).toBe(node.artifactPath(input.hash))
      expect(onNode.inputs.src).toBe(p.file("data.txt"))
      expect(hashTree(node.artifactPath(input.hash)).hash).toBe(input.hash)
      const out = node.newStaging("out")
      const rows = fs.readFileSync(path.join(onNode.inputs.data as string, "sub", "rows.jsonl"), "utf8")
      fs.writeFileSync(path.join(out, "count.txt"), String(rows.trim().split("\n").length))
      const hash = await publishOutput(remote, node, out, "file", { step: "count" })
      // the driver collects it by hash: the same content, committed in its own store
      await collectOutput(remote, driver, hash)
      expect(hashTree(driver.artifactPath(hash)).hash).toBe(hash)
      expect(fs.readFileSync(path.join(driver.artifactPath(hash), "count.txt"), "utf8")).toBe("2")

      // a hostile manifest naming a file outside the artifact is refused before anything is written
      const evil = "e".repeat(64)
      const blob = "b".repeat(64)
      await remote.s3.putBytes(`cache/blobs/${blob}`, "pwn")
      await remote.s3.putBytes(`cache/artifacts/${evil}.json`, JSON.stringify({ format: 1, hash: evil, kind: "file", bytes: 3, files: [["../../escaped.txt", 3, blob]], sidecar: {} }))
      await expect(remote.pull(node, evil)).rejects.toThrow(/bad file entry "..\/..\/escaped.txt"/)
      expect(fs.existsSync(p.file("node/escaped.txt"))).toBe(false)
      expect(fs.existsSync(p.file("escaped.txt"))).toBe(false)
      expect(node.db.artifact(evil)).toBeUndefined()
      expect(fs.readdirSync(p.file("node/staging"))).toEqual([])
    } finally {
      await remote.release()
      remote.close()
      driver.close()
      node.close()
      for (const k of Object.keys(env)) {
        if (saved[k] === undefined) delete process.env[k]
        else process.env[k] = saved[k]
      }
    }
  }, 60_000)

  test("a remote that refuses the credentials or does not answer: one line naming it, exit 2, nothing written", async () => {
    const p = project()
    const { url } = await freshRemote()
    const refused = await run(p, "A", url, { AWS_SECRET_ACCESS_KEY: "wrong-secret" })
    expect(refused.exitCode).toBe(2)
    const line = refused.stderr.trim()
    expect(line.split("\n")).toHaveLength(1)
    expect(line).toContain(`remote ${url}`)
    expect(line).toMatch(/credentials refused/)
    expect(line).not.toContain("wrong-secret")
    expect(artifactHashes(p, "A")).toEqual([])

    const closed = await freePort()
    const unreachable = await run(p, "A", url, { AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${closed}` })
    expect(unreachable.exitCode).toBe(2)
    expect(unreachable.stderr.trim().split("\n")).toHaveLength(1)
    expect(unreachable.stderr).toContain(`remote ${url}`)
    expect(unreachable.stderr).toMatch(/unreachable/)
    expect(artifactHashes(p, "A")).toEqual([])

    const badUrl = await run(p, "A", "s3://Bad_Bucket/x")
    expect(badUrl.exitCode).toBe(2)
    expect(badUrl.stderr).toContain("s3://Bad_Bucket/x")
  }, 120_000)
})
