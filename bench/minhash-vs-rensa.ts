/**
 * MinHash per core, anneal's kernel vs rensa (a Rust MinHash on PyPI): hashing + LSH alone, on one
 * core, same documents, same parameters (word 5-grams of simplified text, 112 hashes as 14 bands x 8
 * rows, threshold 0.8).
 *
 *   npx tsx bench/minhash-vs-rensa.ts [--docs 100000] [--repeats 3]
 *
 * anneal: Signer.sign (from the raw text: simplification, word hashing, shingles, minima and band keys
 * on the WebAssembly SIMD kernel) for every document, then clusterSignatures (bucket sort of each band's
 * keys, candidate verification, union-find). rensa (bench/rensa_minhash.py, RAYON_NUM_THREADS=1): the texts are
 * simplified and cut into shingle strings in Python before its clock starts (so rensa is not charged
 * for tokenization, anneal is), then either per document (RMinHash.update, RMinHashLSH query/verify/
 * insert) or batched (digest_matrix_from_token_byte_sets + insert_matrix_and_query_duplicate_flags);
 * the faster of the two counts. Both sides are timed in CPU seconds of their process (fastest of
 * --repeats runs), which stays meaningful on a loaded machine where wall-clock does not.
 * Last line: `minhash core vs rensa: Nx` (docs per CPU-second, anneal / rensa's faster mode).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import { clusterSignatures } from "../steps/data/minhash/lsh.ts"
import { Signer } from "../steps/data/minhash/signature.ts"
import { plantedCorpus } from "../test/steps/data/corpus.ts"
import { tempDir } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({
  options: {
    docs: { type: "string", default: "100000" },
    repeats: { type: "string", default: "3" }
  }
})
const docsWanted = Number(values.docs)
const repeats = Number(values.repeats)
const NGRAM = 5, BANDS = 14, ROWS = 8, K = BANDS * ROWS, THRESHOLD = 0.8, SEED = 1
const work = tempDir("anneal-bench-")
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

const { docs } = plantedCorpus(11, Math.ceil(docsWanted / 1.42))
const texts = docs.slice(0, docsWanted)
const n = texts.length
const corpusFile = path.join(work, "corpus.jsonl")
fs.writeFileSync(corpusFile, texts.map((text) => JSON.stringify({ text })).join("\n") + "\n")
console.log(`corpus: ${fmt(n)} docs, ${(fs.statSync(corpusFile).size / 1e6).toFixed(1)} MB; machine: ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}`)

// ---- anneal: sign + LSH, keep the first document of each cluster -------------------------------------
const annealOnce = () => {
  const c0 = process.cpuUsage()
  const signer = new Signer({ ngram: NGRAM, numHashes: K, seed: SEED }, { banding: { bands: BANDS, rows: ROWS } })
  const sigs = new Int32Array(n * K)
  const keys = new Uint32Array(n * BANDS)
  const signed = new Uint8Array(n)
  for (let i = 0; i < n; i++) signed[i] = signer.sign(texts[i]!, sigs, i * K, keys, i * BANDS) ? 1 : 0
  const c1 = process.cpuUsage(c0)
  const { clusters } = clusterSignatures(sigs, signed, n, K, { bands: BANDS, rows: ROWS, threshold: THRESHOLD, maxComparisons: 64 }, undefined, keys)
  const c2 = process.cpuUsage(c0)
  const first = new Int32Array(n).fill(-1)
  const removed = new Set<number>()
  for (let i = 0; i < n; i++) {
    const r = clusters.find(i)
    if (first[r] === -1) first[r] = i
    else removed.add(i)
  }
  const sign = (c1.user + c1.system) / 1e6
  return { cpuSeconds: (c2.user + c2.system) / 1e6, signSeconds: sign, removed }
}
let anneal = annealOnce()
for (let r = 1; r < repeats; r++) {
  const run = annealOnce()
  if (run.cpuSeconds < anneal.cpuSeconds) anneal = run
}

// ---- rensa -------------------------------------------------------------------------------------------
interface RensaRun {
  readonly cpu_seconds: number
  readonly seconds: number
  readonly removed: Array<number>
}
const res = await execa(pythonExecutable(), [path.join(import.meta.dirname, "rensa_minhash.py"), corpusFile, String(THRESHOLD), String(repeats)], {
  env: { ...process.env, ...pythonEnvVars(), RAYON_NUM_THREADS: "1" }
})
const rensa = JSON.parse(res.stdout.trim().split("\n").pop()!) as { docs: number; per_document: RensaRun; batched: RensaRun }
if (rensa.docs !== n) throw new Error(`rensa read ${rensa.docs} docs, anneal ${n}`)
fs.rmSync(work, { recursive: true, force: true })

const row = (...cells: Array<string>) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(44) : c.padStart(16))).join(""))
console.log(`\nMinHash hashing + LSH, 1 core (5-grams, ${K} hashes = ${BANDS} x ${ROWS}, threshold ${THRESHOLD}), fastest of ${repeats}`)
row("", "CPU s", "docs/CPU-s", "removed")
row("anneal (sign from raw text + LSH)", anneal.cpuSeconds.toFixed(2), fmt(n / anneal.cpuSeconds), fmt(anneal.removed.size))
row("  of which signing (and band keys)", anneal.signSeconds.toFixed(2), fmt(n / anneal.signSeconds), "")
row("rensa per document (update + query/insert)", rensa.per_document.cpu_seconds.toFixed(2), fmt(n / rensa.per_document.cpu_seconds), fmt(rensa.per_document.removed.length))
row("rensa batched (digest matrix + flags)", rensa.batched.cpu_seconds.toFixed(2), fmt(n / rensa.batched.cpu_seconds), fmt(rensa.batched.removed.length))
const agree = (other: Array<number>) => {
  const o = new Set(other)
  const both = [...anneal.removed].filter((i) => o.has(i)).length
  return `${both} removed by both, ${anneal.removed.size - both} only by anneal, ${o.size - both} only by rensa; same decision on ${(((n - (anneal.removed.size + o.size - 2 * both)) / n) * 100).toFixed(2)}% of docs`
}
console.log(`agreement with rensa per document (keep first, verified): ${agree(rensa.per_document.removed)}`)
console.log(`rensa batched flags candidates without verification (and may flag a cluster's first member), so its removed set is larger by design`)
console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")} (1, 5, 15 min)`)
const best = Math.min(rensa.per_document.cpu_seconds, rensa.batched.cpu_seconds)
console.log(`minhash core vs rensa: ${(best / anneal.cpuSeconds).toFixed(2)}x`)
