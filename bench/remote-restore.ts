/**
 * Remote cache: how long a second machine (a second store directory naming the same remote) takes to
 * restore a model artifact and a dataset that another store built and uploaded, against rebuilding them.
 * The remote is a real S3 server, SeaweedFS on loopback (test/helpers/s3-server.ts; built by
 * scripts/install-seaweedfs.sh). The recipe's two steps write, from a seed, a "model" (one
 * model.safetensors-sized file of pseudo-random bytes, as trained weights look to a compressor) and a
 * "dataset" (JSONL rows in 16 shards) of `--mb` MB each.
 *
 * The rebuild figure is those steps run afresh in an empty store with no remote: generating bytes
 * from a seed is far cheaper than training a model or curating a dataset, so it is a lower bound of any
 * real rebuild, and the ratio is the least a restore saves. Loopback has no network cost: against a real
 * object store the restore runs at the link's speed instead.
 *
 *   npx tsx bench/remote-restore.ts [--mb 1024] [--keep]
 *
 * Then the restore's commit alone, in this process, best of 2 alternated: the store rehashing the
 * downloaded tree (what a restore did before Store.commitVerified) against taking the sha256s the
 * download computed (what it does now).
 *
 * Last lines: `restore commit with download digests vs rehash: Nx`, `restore of 2 x N MB: X s (Y MB/s)`,
 * `rebuild of 2 x N MB: X s`, `remote restore vs rebuild: Nx`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { projectRoot } from "../engine/python.ts"
import { s3Server } from "../test/helpers/s3-server.ts"
import { RemoteStore } from "../cache/remote/remote-store.ts"
import { parseRemote } from "../cache/remote/url.ts"
import { Store } from "../cache/store.ts"

const { values } = parseArgs({ options: { mb: { type: "string", default: "1024" }, keep: { type: "boolean" } } })
const mb = Number(values.mb)
const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-remote-"))
const load = () => os.loadavg()[0]!.toFixed(1)

const recipe = `
import { createCipheriv } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from "anneal"

/** Deterministic pseudo-random bytes: AES-256-CTR keystream of a seed. */
const stream = (seed: string) => createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), Buffer.alloc(16, 0))
const CHUNK = 8 << 20

const model = defineStep({
  kind: "bench-model", version: 1, params: Schema.Struct({ mb: Schema.Int }), inputs: { seed: Port.files() }, output: Port.model(),
  run: (ctx) => {
    const c = stream(fs.readFileSync(ctx.inputs.seed, "utf8"))
    const fd = fs.openSync(path.join(ctx.output, "model.safetensors"), "w")
    const zero = Buffer.alloc(CHUNK)
    for (let done = 0; done < ctx.params.mb * (1 << 20); done += CHUNK) fs.writeSync(fd, c.update(zero))
    fs.closeSync(fd)
    fs.writeFileSync(path.join(ctx.output, "config.json"), JSON.stringify({ model_type: "bench", bytes: ctx.params.mb << 20 }))
  }
})

const dataset = defineStep({
  kind: "bench-dataset", version: 1, params: Schema.Struct({ mb: Schema.Int }), inputs: { seed: Port.files() }, output: Port.dataset(),
  run: (ctx) => {
    const c = stream("rows" + fs.readFileSync(ctx.inputs.seed, "utf8"))
    const shards = 16
    const perShard = Math.ceil(ctx.params.mb * (1 << 20) / shards)
    for (let s = 0; s < shards; s++) {
      const fd = fs.openSync(path.join(ctx.output, "train-" + String(s).padStart(5, "0") + "-of-00016.jsonl"), "w")
      let written = 0
      let i = 0
      while (written < perShard) {
        const lines: Array<string> = []
        for (let k = 0; k < 4096; k++) lines.push(JSON.stringify({ text: c.update(Buffer.alloc(96)).toString("base64"), id: s * 1e9 + i++ }))
        const buf = Buffer.from(lines.join("\\n") + "\\n")
        fs.writeSync(fd, buf)
        written += buf.length
      }
      fs.closeSync(fd)
    }
  }
})

export default recipe("bench-remote", () => {
  const seed = source.files("seed.txt")
  model({ seed }, { mb: ${mb} }, { id: "model" })
  dataset({ seed }, { mb: ${mb} }, { id: "dataset" })
})
`

const makeProject = (): string => {
  const dir = path.join(root, "project")
  fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true })
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
  fs.symlinkSync(projectRoot, path.join(dir, "node_modules", "anneal"))
  fs.writeFileSync(path.join(dir, "seed.txt"), "anneal-bench")
  fs.writeFileSync(path.join(dir, "recipe.ts"), recipe)
  return dir
}

const handle = s3Server()
try {
  const server = await handle.start()
  await server.createBucket("bench")
  const dir = makeProject()
  const remote = "s3://bench/cache"
  const run = async (store: string, withRemote: boolean) => {
    const t0 = performance.now()
    const r = await execa(process.execPath, [path.join(projectRoot, "bin", "anneal.js"), "run", path.join(dir, "recipe.ts"), "--json", "--store", path.join(root, store), ...(withRemote ? ["--remote", remote] : [])], {
      env: { ...process.env, ...server.env }, reject: false, stdin: "ignore"
    })
    const seconds = (performance.now() - t0) / 1000
    if (r.exitCode !== 0) throw new Error(`run on ${store} failed: ${String(r.stderr).slice(-2000)}`)
    const events = String(r.stdout).split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { event: string; status?: string; ran?: number; cached?: number; output?: string | null })
    const summary = events.find((e) => e.event === "run")!
    const outputs = events.flatMap((e) => (e.event === "step" && typeof e.output === "string" ? [e.output] : []))
    return { seconds, ran: summary.ran ?? 0, cached: summary.cached ?? 0, outputs }
  }
  console.log(`remote restore bench: 2 artifacts of ${mb} MB each (model: 1 file; dataset: 16 shards), SeaweedFS on loopback, load ${load()}`)
  const rebuild = await run("rebuild", false)
  console.log(`rebuild, fresh store, no remote:       ${rebuild.seconds.toFixed(2)} s (ran ${rebuild.ran}), load ${load()}`)
  fs.rmSync(path.join(root, "rebuild"), { recursive: true, force: true })
  const upload = await run("A", true)
  console.log(`build + upload on store A:             ${upload.seconds.toFixed(2)} s (ran ${upload.ran}), load ${load()}`)
  const restore = await run("B", true)
  if (restore.ran !== 0) throw new Error(`store B ran ${restore.ran} steps instead of restoring them`)
  console.log(`restore on store B from the remote:    ${restore.seconds.toFixed(2)} s (cached ${restore.cached}, ran 0), load ${load()}`)
  // The restore's commit, side by side in this process: the store rehashing what was just downloaded
  // (as before Store.commitVerified) vs taking the digests the download computed; alternated, best of 2
  Object.assign(process.env, server.env)
  const remoteStore = await RemoteStore.open(parseRemote(remote))
  const best = { rehash: Infinity, verified: Infinity }
  for (let round = 0; round < 2; round++) {
    for (const mode of ["rehash", "verified"] as const) {
      const dirOf = path.join(root, `${mode}-${round}`)
      const store = Store.open(dirOf)
      const t0 = performance.now()
      for (const h of upload.outputs) {
        if (mode === "verified") {
          await remoteStore.pull(store, h)
        } else {
          const staging = store.newStaging(`bench-${h}`)
          const { manifest } = await remoteStore.download(h, staging)
          if ((await store.commit(staging, manifest.kind, {})).hash !== h) throw new Error(`rehash of ${h} differs`)
        }
      }
      best[mode] = Math.min(best[mode], (performance.now() - t0) / 1000)
      store.close()
      fs.rmSync(dirOf, { recursive: true, force: true })
    }
  }
  await remoteStore.release()
  remoteStore.close()
  console.log(`download + commit, store rehashes:      ${best.rehash.toFixed(2)} s (best of 2), load ${load()}`)
  console.log(`download + commit with its digests:     ${best.verified.toFixed(2)} s (best of 2)`)
  console.log(`restore commit with download digests vs rehash: ${(best.rehash / best.verified).toFixed(2)}x`)
  console.log(`restore of 2 x ${mb} MB: ${restore.seconds.toFixed(2)} s (${((2 * mb) / restore.seconds).toFixed(0)} MB/s)`)
  console.log(`rebuild of 2 x ${mb} MB: ${rebuild.seconds.toFixed(2)} s`)
  console.log(`remote restore vs rebuild: ${(rebuild.seconds / restore.seconds).toFixed(2)}x`)
} finally {
  await handle.stop()
  if (values.keep !== true) fs.rmSync(root, { recursive: true, force: true })
  else console.log(`kept ${root}`)
}
