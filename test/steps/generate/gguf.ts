/**
 * The tiny fixture Llama as a GGUF (llama.cpp's own converter, through to_gguf.py), in a directory laid out
 * as `quantize` writes one (`model.gguf`). Built once per fixtures version and temp root, and shared by the
 * generate test files that serve it (the conversion is the slow part: a Python start with torch).
 */
import * as os from "node:os"
import * as path from "node:path"
import { buildOnce, makeFixtures, python } from "../train/helpers.ts"

export const fixtureGguf = async (llamaCppDir: string): Promise<string> => {
  const fx = await makeFixtures()
  // one converter at a time: a second test file waits for the first's copy
  return buildOnce(path.join(os.tmpdir(), `anneal-generate-gguf-${path.basename(fx)}`), async (staging) => {
    await python([path.join(import.meta.dirname, "to_gguf.py"), path.join(llamaCppDir, "src"), path.join(fx, "base"), path.join(staging, "model.gguf")])
  })
}
