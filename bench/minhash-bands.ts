/**
 * The MinHash band stage's signature reads: `verifyBand` (each candidate row's signature read once, in
 * file order, through a bounded buffer) against the pairwise loop it replaced (two positional reads per
 * comparison), on a planted corpus signed by the real sign stage (8 pieces, 14 bands x 8 rows). Both
 * must find the same pairs, in the same order (checked). Per band, each variant's clock covers building
 * and sorting the band's pairs and verifying them; the variants alternate, round by round.
 *
 *   npx tsx bench/minhash-bands.ts [--docs 85000] [--rounds 4] [--cold]
 *
 * --cold: before each band, the sign stage's files leave the page cache (fdatasync, then
 * posix_fadvise DONTNEED through python3, on those files only), as on a node that has not read them.
 * Last line: `band verification vs pairwise reads: Nx` (median wall seconds of the 14 bands).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { bandPairs, BAND_BUFFER_BYTES, SignatureFiles, verifyBand } from "../steps/data/minhash/staged.ts"
import { plantedCorpus } from "../test/steps/data/corpus.ts"
import { tempDir } from "../test/steps/data/helpers.ts"
import { pairwise, signCorpus } from "../test/steps/data/pairwise-bands.ts"

const { values } = parseArgs({ options: { docs: { type: "string", default: "85000" }, rounds: { type: "string", default: "4" }, cold: { type: "boolean", default: false } } })
const BANDS = 14
const ROWS = 8
const K = BANDS * ROWS
const THRESHOLD = 0.8
const MAX_COMPARISONS = 64

const dir = tempDir("anneal-bench-bands-")
const { docs } = plantedCorpus(5, Math.round(Number(values.docs) / 1.43))
const file = path.join(dir, "corpus.jsonl")
fs.writeFileSync(file, docs.map((text) => JSON.stringify({ text })).join("\n") + "\n")
const { signDirs, counts } = await signCorpus(file, dir, 8, BANDS, ROWS)
const sigFiles = signDirs.map((d) => path.join(d, "sigs.bin"))
const evict = () => {
  const r = spawnSync("python3", ["-c", "import os,sys\nfor f in sys.argv[1:]:\n fd=os.open(f,os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)", ...sigFiles])
  if (r.status !== 0) throw new Error(`could not drop the sign files from the page cache: ${String(r.stderr)}`)
}


type Variant = "pairwise" | "verifyBand"
const run = (variant: Variant) => {
  let wall = 0
  let reads = 0
  const c0 = process.cpuUsage()
  const edges: Array<Array<number>> = []
  for (let band = 0; band < BANDS; band++) {
    if (values.cold) evict()
    const t0 = performance.now()
    const { sv, m, n } = bandPairs({ signDirs, counts, band, bands: BANDS })
    const sigs = new SignatureFiles(signDirs, counts, K)
    edges.push(variant === "pairwise"
      ? pairwise(sv, m, n, sigs, THRESHOLD, MAX_COMPARISONS).edges
      : verifyBand(sv, m, n, sigs, { threshold: THRESHOLD, maxComparisons: MAX_COMPARISONS, bufferBytes: BAND_BUFFER_BYTES }).edges)
    sigs.close()
    wall += performance.now() - t0
    reads += sigs.reads
  }
  const cpu = process.cpuUsage(c0)
  return { wall: wall / 1000, cpu: (cpu.user + cpu.system) / 1e6, reads, edges: JSON.stringify(edges) }
}

console.log(`${docs.length} docs, ${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB, ${signDirs.length} pieces, ${values.cold ? "cold" : "cached"} sign files; ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}`)
const walls: Record<Variant, Array<number>> = { pairwise: [], verifyBand: [] }
const cpus: Record<Variant, Array<number>> = { pairwise: [], verifyBand: [] }
let reference: string | undefined
for (let round = 0; round < Number(values.rounds); round++) {
  const order: Array<Variant> = round % 2 === 0 ? ["pairwise", "verifyBand"] : ["verifyBand", "pairwise"]
  for (const v of order) {
    const r = run(v)
    reference ??= r.edges
    if (r.edges !== reference) throw new Error(`${v} found other pairs than the first run`)
    walls[v].push(r.wall)
    cpus[v].push(r.cpu)
    console.log(`round ${round} ${v.padEnd(10)} ${r.wall.toFixed(2)} s wall, ${r.cpu.toFixed(2)} s CPU, ${r.reads} read calls; load ${os.loadavg()[0]!.toFixed(1)}`)
  }
}
const median = (a: ReadonlyArray<number>) => a.slice().sort((x, y) => x - y)[a.length >> 1]!
console.log(`median: pairwise ${median(walls.pairwise).toFixed(2)} s wall (${median(cpus.pairwise).toFixed(2)} s CPU), verifyBand ${median(walls.verifyBand).toFixed(2)} s wall (${median(cpus.verifyBand).toFixed(2)} s CPU); the same pairs`)
fs.rmSync(dir, { recursive: true, force: true })
console.log(`band verification vs pairwise reads: ${(median(walls.pairwise) / median(walls.verifyBand)).toFixed(2)}x`)
