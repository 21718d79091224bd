/**
 * Issue 13's remote store, what remote.test.ts (test/cache) leaves open.
 *
 * Credentials: "they come from the usual AWS environment variables and profiles; nothing secret is
 * written to the store or logs". test/cache/remote.test.ts takes them from the environment and checks a
 * refused secret stays out of the error line; here they come from a named profile in a shared
 * credentials file (region and endpoint from the config file), a build on store A is restored on store B
 * with the remote, profile and endpoint named only in anneal.config.json, and then the secret is looked
 * for in every file of the stores (database, logs, sidecars), in everything the CLI printed, and in every
 * object on the remote.
 *
 * Two drivers racing on the same key: test/cache/remote.test.ts runs two whole CLI runs side by side,
 * which may or may not overlap in their uploads. Here two stores holding the same artifact push it at the
 * same moment (files big enough to go up in parts), while a third store keeps trying to restore it: the
 * reader sees either nothing or the whole artifact, never a manifest without its blobs, and both pushes
 * end with one intact copy and an index entry naming it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import { hashTree } from "../../cache/hash.ts"
import { resolveS3Settings } from "../../cache/remote/credentials.ts"
import { RemoteStore } from "../../cache/remote/remote-store.ts"
import { parseRemote } from "../../cache/remote/url.ts"
import { Store } from "../../cache/store.ts"
import { annealIndex, cli, ranSteps, tempProject } from "../helpers/project.ts"
import { s3Server, weedInstalled } from "../helpers/s3-server.ts"
import type { S3Server } from "../helpers/s3-server.ts"

describe("credentials from a profile", () => {
  test("the named profile's keys, the config's region and endpoint; the environment's keys win over any profile", () => {
    const d = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "anneal-aws-"))
    fs.writeFileSync(path.join(d, "credentials"), "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = default-secret\n\n[team]\naws_access_key_id = TEAMKEY\naws_secret_access_key = team-secret\naws_session_token = team-token\n")
    fs.writeFileSync(path.join(d, "config"), "[profile team]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9\n")
    const files = { AWS_SHARED_CREDENTIALS_FILE: path.join(d, "credentials"), AWS_CONFIG_FILE: path.join(d, "config") }
    const team = resolveS3Settings({}, { ...files, AWS_PROFILE: "team" })
    expect(team).toEqual({
      credentials: { accessKeyId: "TEAMKEY", secretAccessKey: "team-secret", sessionToken: "team-token", source: `profile team in ${files.AWS_SHARED_CREDENTIALS_FILE}` },
      region: "eu-west-3",
      endpoint: "http://127.0.0.1:9"
    })
    expect(resolveS3Settings({}, files).credentials?.accessKeyId).toBe("DEFAULTKEY")
    const env = resolveS3Settings({}, { ...files, AWS_PROFILE: "team", AWS_ACCESS_KEY_ID: "ENVKEY", AWS_SECRET_ACCESS_KEY: "env-secret" })
    expect(env.credentials).toMatchObject({ accessKeyId: "ENVKEY", secretAccessKey: "env-secret", source: "AWS_ACCESS_KEY_ID" })
    // the source named in errors says where the keys came from, never what they are
    expect(JSON.stringify(team.credentials!.source)).not.toContain("secret")
  })
})

const handle = s3Server()
let server: S3Server

describe.skipIf(!weedInstalled())("the remote store on SeaweedFS", () => {
  beforeAll(async () => {
    server = await handle.start()
  }, 180_000)
  afterAll(() => handle.stop(), 60_000)

  test("a profile's secret signs the requests of a build and a restore, and is written nowhere", async () => {
    const p = tempProject("anneal-cred-")
    const bucket = `anneal-cred-${process.pid}`
    await server.createBucket(bucket)
    const url = `s3://${bucket}/cache`
    p.write("data.txt", "credentials test data\n")
    p.write("recipe.ts", `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}
const copy = defineStep({
  kind: "cred-copy", version: 1, params: Schema.Struct({}), inputs: { data: Port.files() }, output: Port.files(),
  run: (ctx) => {
    ctx.log("copying " + ctx.inputs.data)
    fs.writeFileSync(path.join(ctx.output, "copy.txt"), fs.readFileSync(ctx.inputs.data, "utf8").repeat(100))
  }
})
export default recipe("cred", () => { copy({ data: source.files("data.txt") }, {}, { id: "copy" }) })
`)
    p.write("aws/credentials", `[audit]\naws_access_key_id = ${server.accessKeyId}\naws_secret_access_key = ${server.secretAccessKey}\n`)
    p.write("aws/config", `[profile audit]\nregion = us-east-1\nendpoint_url = ${server.endpoint}\n`)
    // no key in the environment: only the profile can sign
    const env = {
      ...server.env,
      AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_ENDPOINT_URL_S3: "",
      AWS_PROFILE: "audit", AWS_SHARED_CREDENTIALS_FILE: p.file("aws/credentials"), AWS_CONFIG_FILE: p.file("aws/config")
    }
    const outputs: Array<string> = []
    const run = async (args: ReadonlyArray<string>, withEnv: Record<string, string> = env) => {
      const r = await cli(args, { env: withEnv, cwd: p.dir })
      outputs.push(r.stdout, r.stderr)
      return r
    }
    const a = await run(["run", p.file("recipe.ts"), "--json", "--store", p.file("A"), "--remote", url])
    expect(a.exitCode, a.stderr).toBe(0)
    expect(ranSteps(a.events)).toEqual(["copy"])
    // store B: the remote, its profile and its endpoint from anneal.config.json only (no --remote,
    // no AWS_PROFILE, no endpoint variable): it restores what A built
    p.write("anneal.config.json", JSON.stringify({ remote: { url, profile: "audit", endpoint: server.endpoint } }))
    const fromConfig = { ...env, AWS_PROFILE: "", AWS_CONFIG_FILE: p.file("aws/no-config") }
    const b = await run(["run", p.file("recipe.ts"), "--json", "--store", p.file("B")], fromConfig)
    expect(b.exitCode, b.stderr).toBe(0)
    expect(ranSteps(b.events)).toEqual([])
    // --remote none turns the configured remote off for one command: store C builds
    const c = await run(["run", p.file("recipe.ts"), "--json", "--store", p.file("C"), "--remote", "none"], fromConfig)
    expect(c.exitCode, c.stderr).toBe(0)
    expect(ranSteps(c.events)).toEqual(["copy"])
    for (const store of ["A", "B"]) {
      const v = await run(["cache", "verify", "--store", p.file(store)], fromConfig)
      expect(v.exitCode, v.stdout + v.stderr).toBe(0)
      expect(v.stdout, "verify checked the remote named in the config").toContain(url)
    }
    await run(["cache", "gc", "--store", p.file("A"), "--remote", url])

    const secret = Buffer.from(server.secretAccessKey)
    const leaks: Array<string> = []
    let files = 0
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const f = path.join(dir, e.name)
        if (e.isDirectory()) walk(f)
        else if (e.isFile()) {
          files++
          if (fs.readFileSync(f).includes(secret)) leaks.push(path.relative(p.dir, f))
        }
      }
    }
    for (const store of ["A", "B", "C"]) walk(p.file(store))
    expect(files).toBeGreaterThan(5) // the stores are there: databases, logs, artifacts
    outputs.forEach((o, i) => (o.includes(server.secretAccessKey) ? leaks.push(`CLI output ${i}`) : undefined))
    const objects = await server.client(bucket).list("")
    expect(objects.length).toBeGreaterThan(2)
    for (const o of objects) {
      const bytes = await server.client(bucket).getBytes(o.key)
      if (bytes !== undefined && bytes !== null && bytes.includes(secret)) leaks.push(`s3://${bucket}/${o.key}`)
    }
    expect(leaks).toEqual([])
  }, 180_000)

  test("two stores push the same artifact at once while a third restores: nothing half-visible, one intact copy", async () => {
    const p = tempProject("anneal-race-")
    const bucket = `anneal-race-${process.pid}`
    await server.createBucket(bucket)
    const url = `s3://${bucket}/cache`
    const saved = { ...process.env }
    // files over 5 MB go up in parts: a multipart upload racing another one of the same blob
    const env = { ...server.env, ANNEAL_S3_MULTIPART_MB: "5" }
    Object.assign(process.env, env)
    const stores = ["A", "B", "C"].map((n) => Store.open(p.file(n)))
    const remotes: Array<RemoteStore> = []
    try {
      // the same bytes committed in A and B: the same artifact hash
      const hashes = await Promise.all(stores.slice(0, 2).map(async (s) => {
        const staging = s.newStaging("race")
        for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(staging, `part-${i}.txt`), `part ${i} `.repeat(3000 + i))
        fs.writeFileSync(path.join(staging, "big.bin"), Buffer.alloc(12 * 2 ** 20, "race"))
        return (await s.commit(staging, "dataset", { step: "race" })).hash
      }))
      expect(hashes[1]).toBe(hashes[0])
      const hash = hashes[0]!
      for (let i = 0; i < 3; i++) remotes.push(await RemoteStore.open(parseRemote(url)))
      const [one, two, reader] = remotes as [RemoteStore, RemoteStore, RemoteStore]
      // make the race certain rather than likely: no blob is written until both drivers have found the
      // manifest missing and started uploading blobs, and no manifest until both have reached theirs (left
      // alone, one driver's manifest is often there before the other looks, and the second uploads nothing)
      const barrier = () => {
        const arrived = new Set<RemoteStore>()
        let open!: () => void
        const opened = new Promise<void>((ok) => (open = ok))
        return (r: RemoteStore) => {
          arrived.add(r)
          if (arrived.size === 2) open()
          return opened
        }
      }
      const blobsGate = barrier()
      const manifestGate = barrier()
      for (const r of [one, two]) {
        const putFile = r.s3.putFile.bind(r.s3)
        const putBytes = r.s3.putBytes.bind(r.s3)
        r.s3.putFile = async (...args) => (await blobsGate(r), putFile(...args))
        r.s3.putBytes = async (...args) => (args[0].includes("/artifacts/") ? await manifestGate(r) : undefined, putBytes(...args))
      }
      const key = "a".repeat(64)
      let pushing = true
      const seen: Array<string> = []
      const read = (async () => {
        // until both pushes are over, and once more after: each try finds nothing, or restores it whole
        for (let last = false; ; last = !pushing) {
          const entry = await reader.lookup(key)
          const manifest = await reader.manifest(hash)
          if (manifest === undefined) seen.push("absent")
          else {
            await reader.pull(stores[2]!, hash) // throws on a missing or short blob
            expect(hashTree(stores[2]!.artifactPath(hash)).hash).toBe(hash)
            stores[2]!.remove(hash)
            seen.push("whole")
          }
          // the index never names an artifact whose manifest is not there yet
          if (entry !== undefined) expect(manifest, "index entry before its manifest").toBeDefined()
          if (last) return
        }
      })()
      const pushed = await Promise.all([one.push(stores[0]!, hash, { key, seconds: 1 }), two.push(stores[1]!, hash, { key, seconds: 2 })]).finally(() => (pushing = false))
      await read
      console.log(`uploads: ${pushed.map((x) => `${x.uploaded} blobs, ${x.bytes} bytes`).join(" | ")}; reader: ${seen.filter((x) => x === "absent").length} tries found nothing, ${seen.filter((x) => x === "whole").length} restored it whole`)
      // both drivers uploaded blobs and wrote the manifest at the same time (the gates above)
      expect(pushed.every((x) => x.uploaded > 0)).toBe(true)
      expect(seen.at(-1)).toBe("whole")
      expect((await reader.lookup(key))?.output).toBe(hash)
      // what is on the remote: one manifest, its blobs intact (a fresh store restores and checks them)
      const objects = (await server.client(bucket).list("cache/")).map((o) => o.key)
      expect(objects.filter((k) => k.startsWith("cache/artifacts/"))).toEqual([`cache/artifacts/${hash}.json`])
      expect(objects.filter((k) => k.startsWith("cache/blobs/"))).toHaveLength(41)
      const fresh = Store.open(p.file("D"))
      try {
        await reader.pull(fresh, hash)
        expect(hashTree(fresh.artifactPath(hash)).hash).toBe(hash)
      } finally {
        fresh.close()
      }
    } finally {
      for (const r of remotes) {
        await r.release()
        r.close()
      }
      for (const s of stores) s.close()
      for (const k of Object.keys(env)) {
        if (saved[k] === undefined) delete process.env[k]
        else process.env[k] = saved[k]
      }
    }
  }, 180_000)
})
