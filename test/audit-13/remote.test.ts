/**
 * Issue 13: "credentials come from the usual AWS environment variables and profiles; nothing secret is
 * written to the store or logs". remote.test.ts takes its credentials from the environment and checks a
 * refused secret stays out of the error line; here the credentials come from a named profile in a
 * shared credentials file (region and endpoint from the config file), a build on store A is restored on
 * store B, and then the secret is looked for in every file of both stores (database, logs, sidecars),
 * in everything the CLI printed, and in every object on the remote.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import { resolveS3Settings } from "../../cache/remote/credentials.ts"
import { annealIndex, cli, ranSteps, tempProject } from "../helpers/project.ts"
import { s3Server, weedInstalled } from "../helpers/s3-server.ts"
import type { S3Server } from "../helpers/s3-server.ts"

describe("credentials from a profile", () => {
  test("the named profile's keys, the config's region and endpoint; the environment's keys win over any profile", () => {
    const d = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "anneal-audit13-aws-"))
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

describe.skipIf(!weedInstalled())("no secret in the stores, the output or the remote (SeaweedFS)", () => {
  beforeAll(async () => {
    server = await handle.start()
  }, 180_000)
  afterAll(() => handle.stop(), 60_000)

  test("a profile's secret signs the requests of a build and a restore, and is written nowhere", async () => {
    const p = tempProject("anneal-audit13-cred-")
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
    const run = async (args: ReadonlyArray<string>) => {
      const r = await cli(args, { env })
      outputs.push(r.stdout, r.stderr)
      return r
    }
    const a = await run(["run", p.file("recipe.ts"), "--json", "--store", p.file("A"), "--remote", url])
    expect(a.exitCode, a.stderr).toBe(0)
    expect(ranSteps(a.events)).toEqual(["copy"])
    const b = await run(["run", p.file("recipe.ts"), "--json", "--store", p.file("B"), "--remote", url])
    expect(b.exitCode, b.stderr).toBe(0)
    expect(ranSteps(b.events)).toEqual([])
    for (const store of ["A", "B"]) {
      const v = await run(["cache", "verify", "--store", p.file(store), "--remote", url])
      expect(v.exitCode, v.stdout + v.stderr).toBe(0)
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
    walk(p.file("A"))
    walk(p.file("B"))
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
})
