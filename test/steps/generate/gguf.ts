/**
 * The tiny fixture Llama as a GGUF (llama.cpp's own converter, through to_gguf.py), in a directory laid out
 * as `quantize` writes one (`model.gguf`). Built once per fixtures version and temp root, and shared by the
 * generate test files that serve it (the conversion is the slow part: a Python start with torch).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeFixtures, python, tempDir } from "../train/helpers.ts"

export const fixtureGguf = async (llamaCppDir: string): Promise<string> => {
  const fx = await makeFixtures()
  const dir = path.join(os.tmpdir(), `anneal-generate-gguf-${path.basename(fx)}`)
  if (fs.existsSync(path.join(dir, ".complete"))) return dir
  // one converter at a time: a second test file waits for the first's copy (a lock older than 10 min is a
  // crashed holder's, and is ignored)
  const lock = `${dir}.lock`
  const deadline = Date.now() + 600_000
  for (;;) {
    try {
      fs.mkdirSync(lock)
      break
    } catch {
      if (fs.existsSync(path.join(dir, ".complete"))) return dir
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
      if (age > 600_000 || Date.now() > deadline) break
      await new Promise((r) => setTimeout(r, 250))
    }
  }
  try {
    return await convert(llamaCppDir, fx, dir)
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
}

const convert = async (llamaCppDir: string, fx: string, dir: string): Promise<string> => {
  if (fs.existsSync(path.join(dir, ".complete"))) return dir
  const staging = tempDir("anneal-generate-gguf-staging-")
  await python([path.join(import.meta.dirname, "to_gguf.py"), path.join(llamaCppDir, "src"), path.join(fx, "base"), path.join(staging, "model.gguf")])
  fs.writeFileSync(path.join(staging, ".complete"), "")
  try {
    fs.renameSync(staging, dir)
  } catch {
    fs.rmSync(staging, { recursive: true, force: true }) // another test file finished first: use its copy
  }
  return dir
}
