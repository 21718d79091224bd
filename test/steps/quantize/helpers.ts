/**
 * The quantize tests' models (make_model.py: a trained 2-layer Llama of hidden 256, a Phi of the same
 * size, a held-out text dataset), built once per test run and version of the script from the training
 * tests' shared fixtures; quantize.test.ts and qlora.test.ts both use them, and buildOnce makes the one
 * that starts second wait for the first's build instead of training the Llama a second time.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { projectRoot } from "../../../engine/python.ts"
import { buildOnce, makeFixtures, python } from "../train/helpers.ts"

export const here = path.join(projectRoot, "test", "steps", "quantize")

export interface QuantizeModels {
  readonly llama: string
  readonly phi: string
  readonly heldOut: string
  readonly fixtures: string
  /** the Llama's tokenizer's ids (no special tokens) for each of make_model.py's TOKENIZED sentences */
  readonly sourceIds: Readonly<Record<string, ReadonlyArray<number>>>
}

export const makeQuantizeModels = async (): Promise<QuantizeModels> => {
  const fixtures = await makeFixtures()
  const script = path.join(here, "make_model.py")
  const hash = createHash("sha256").update(fs.readFileSync(script)).update(fixtures).digest("hex").slice(0, 12)
  const dir = await buildOnce(path.join(os.tmpdir(), `anneal-quantize-models-${hash}`), async (staging) => {
    await python([script, fixtures, staging])
  })
  return {
    llama: path.join(dir, "llama"), phi: path.join(dir, "phi"), heldOut: path.join(dir, "held-out"), fixtures,
    sourceIds: JSON.parse(fs.readFileSync(path.join(dir, "source-ids.json"), "utf8"))
  }
}

/** A safetensors file with the given tensors (name -> dtype, shape), zero-filled. */
export const writeSafetensors = (file: string, tensors: Record<string, { dtype: string; shape: ReadonlyArray<number> }>): void => {
  const width: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, I32: 4 }
  let offset = 0
  const header: Record<string, unknown> = {}
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * width[t.dtype]!
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  const json = Buffer.from(JSON.stringify(header))
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(offset)]))
}
