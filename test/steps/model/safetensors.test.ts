/**
 * safetensors in TypeScript: files written by the Rust/Python library read back and write out
 * byte-identical for every dtype; float conversions round exactly as torch does; sharded models keep
 * every tensor; hostile files fail with an error naming the file and tensor, without large allocations.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { merge } from "../../../steps/model/index.ts"
import { decodeToF32, dtypeSizes, encodeFromF32 } from "../../../steps/model/safetensors/dtype.ts"
import type { FloatDtype } from "../../../steps/model/safetensors/dtype.ts"
import { maxHeaderBytes, SafetensorsError } from "../../../steps/model/safetensors/header.ts"
import { ModelReader, SafetensorsFile } from "../../../steps/model/safetensors/reader.ts"
import type { TensorRef } from "../../../steps/model/safetensors/reader.ts"
import { encodeHeader, ModelWriter } from "../../../steps/model/safetensors/writer.ts"
import { removeTempDirs, runStep, runTools, tempDir } from "./helpers.ts"

let root: string

beforeAll(async () => {
  root = tempDir("safetensors")
  await runTools([
    ["dtypes", root],
    ["make", path.join(root, "sharded"), "--layers", "3", "--hidden", "32", "--shard-bytes", "40000"]
  ])
}, 300_000)

afterAll(removeTempDirs)

const bytesOf = async (ref: TensorRef): Promise<Uint8Array> => {
  const out = new Uint8Array(ref.info.end - ref.info.begin)
  await ref.file.readBytes(ref.info, 0, out)
  return out
}

describe("round trip", () => {
  it("reading and writing back a file of every dtype gives the same bytes", async () => {
    const file = path.join(root, "all-dtypes.safetensors")
    const f = await SafetensorsFile.open(file)
    const dtypes = new Set(f.tensors.map((t) => t.dtype))
    expect([...dtypes].sort()).toEqual(Object.keys(dtypeSizes).sort())
    const out = tempDir("rt")
    const w = ModelWriter.create(out, f.tensors, { metadata: f.header.metadata ?? null, singleFileName: "x.safetensors" })
    for (const t of f.tensors) await w.write(await bytesOf({ file: f, info: t }))
    await w.finish()
    await f.close()
    expect(Buffer.compare(fs.readFileSync(path.join(out, "x.safetensors")), fs.readFileSync(file))).toBe(0)
  })

  it("decoding float tensors to float32 and encoding them back is lossless", async () => {
    const f = await SafetensorsFile.open(path.join(root, "all-dtypes.safetensors"))
    for (const name of ["f32", "f16", "bf16"]) {
      const info = f.tensors.find((t) => t.name === name)!
      const raw = await bytesOf({ file: f, info })
      const values = new Float32Array(info.numel)
      decodeToF32(info.dtype as FloatDtype, raw, values, info.numel)
      const back = new Uint8Array(raw.length)
      encodeFromF32(info.dtype as FloatDtype, values, back, info.numel)
      expect(Buffer.compare(Buffer.from(back), Buffer.from(raw)), name).toBe(0)
    }
    await f.close()
  })

  it("float32 -> bf16 and -> f16 round exactly as torch does (ties, overflow, subnormals)", async () => {
    const f = await SafetensorsFile.open(path.join(root, "rounding.safetensors"))
    const get = (n: string) => f.tensors.find((t) => t.name === n)!
    const src = get("f32")
    const values = new Float32Array(src.numel)
    decodeToF32("F32", await bytesOf({ file: f, info: src }), values, src.numel)
    for (const [name, dtype] of [["bf16", "BF16"], ["f16", "F16"]] as const) {
      const expected = await bytesOf({ file: f, info: get(name) })
      const ours = new Uint8Array(expected.length)
      encodeFromF32(dtype, values, ours, values.length)
      const a = new Uint16Array(ours.buffer)
      const b = new Uint16Array(expected.buffer, expected.byteOffset, values.length)
      // NaN stays NaN; its bits are not compared (torch's vectorized bf16 path writes 0xffff, its scalar path 0x7fc0)
      const isNaN16 = (x: number) => dtype === "BF16" ? (x & 0x7f80) === 0x7f80 && (x & 0x7f) !== 0 : (x & 0x7c00) === 0x7c00 && (x & 0x3ff) !== 0
      const bad = [...a.keys()].filter((i) => a[i] !== b[i] && !(isNaN16(a[i]!) && isNaN16(b[i]!))).slice(0, 5).map((i) => `${values[i]}: ${a[i]!.toString(16)} vs torch ${b[i]!.toString(16)}`)
      expect(bad, dtype).toEqual([])
    }
    await f.close()
  })

  it("a sharded model read and written in shards keeps every tensor", async () => {
    const dir = path.join(root, "sharded")
    expect(fs.existsSync(path.join(dir, "model.safetensors.index.json"))).toBe(true)
    const input = await ModelReader.open(dir)
    expect(input.files.length).toBeGreaterThan(1)
    const out = tempDir("shards")
    const decls = input.names.map((n) => input.get(n).info)
    const w = ModelWriter.create(out, decls, { maxShardBytes: 30_000 })
    for (const n of input.names) await w.write(await bytesOf(input.get(n)))
    const files = await w.finish()
    expect(files).toContain("model.safetensors.index.json")
    const output = await ModelReader.open(out)
    expect(output.files.length).toBeGreaterThan(1)
    expect([...output.names].sort()).toEqual([...input.names].sort())
    for (const n of input.names) {
      const a = output.get(n).info
      const b = input.get(n).info
      expect([a.dtype, a.shape], n).toEqual([b.dtype, b.shape])
      expect(Buffer.compare(Buffer.from(await bytesOf(output.get(n))), Buffer.from(await bytesOf(input.get(n)))), n).toBe(0)
    }
    await Promise.all([input.close(), output.close()])
  })
})

// ---------------------------------------------------------------------------------------------

const header = (json: string, pad = true): Uint8Array => {
  const body = new TextEncoder().encode(json)
  const n = pad ? Math.ceil(body.length / 8) * 8 : body.length
  const out = new Uint8Array(8 + n).fill(0x20, 8)
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true)
  out.set(body, 8)
  return out
}

const writeHostile = (name: string, ...parts: Array<Uint8Array>): string => {
  const file = path.join(root, name)
  fs.writeFileSync(file, Buffer.concat(parts.map((p) => Buffer.from(p))))
  return file
}

const openError = async (file: string): Promise<SafetensorsError> => {
  const e = await SafetensorsFile.open(file).then(
    () => undefined,
    (x: unknown) => x
  )
  expect(e).toBeInstanceOf(SafetensorsError)
  const err = e as SafetensorsError
  expect(err.message.startsWith(file)).toBe(true)
  expect(err.message.split("\n")).toHaveLength(1)
  return err
}

describe("hostile files", () => {
  it("a truncated file names the tensor that runs past the end", async () => {
    const good = encodeHeader([{ name: "w", dtype: "F32", shape: [4, 4] }])
    const file = writeHostile("truncated.safetensors", good, new Uint8Array(30))
    const e = await openError(file)
    expect(e.tensor).toBe("w")
    expect(e.message).toMatch(/past the end of the file/)
  })

  it("a file shorter than the length prefix", async () => {
    const e = await openError(writeHostile("tiny.safetensors", new Uint8Array([1, 2, 3])))
    expect(e.message).toMatch(/too short/)
  })

  it("a header length beyond the file fails without allocating it", async () => {
    const prefix = new Uint8Array(8)
    new DataView(prefix.buffer).setBigUint64(0, BigInt(maxHeaderBytes - 8), true)
    const file = writeHostile("long-header.safetensors", prefix, new TextEncoder().encode("{}"))
    const before = process.memoryUsage().arrayBuffers
    const e = await openError(file)
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1_000_000)
    expect(e.message).toMatch(/beyond the end of the file/)
    const huge = new Uint8Array(8)
    new DataView(huge.buffer).setBigUint64(0, 2n ** 63n + 5n, true)
    const e2 = await openError(writeHostile("huge-header.safetensors", huge, new Uint8Array(16)))
    expect(e2.message).toMatch(/beyond the end of the file/)
  })

  it("overlapping tensors are named", async () => {
    const json = JSON.stringify({
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [4], data_offsets: [8, 24] }
    })
    const e = await openError(writeHostile("overlap.safetensors", header(json), new Uint8Array(24)))
    expect(e.tensor).toBe("b")
    expect(e.message).toMatch(/overlaps tensor "a"/)
  })

  it("a shape that does not match the byte size", async () => {
    const json = JSON.stringify({ w: { dtype: "BF16", shape: [3, 3], data_offsets: [0, 16] } })
    const e = await openError(writeHostile("shape.safetensors", header(json), new Uint8Array(16)))
    expect(e.tensor).toBe("w")
    expect(e.message).toMatch(/holds 16 bytes but BF16 x \[3,3\] needs 18/)
  })

  it("a header that is not JSON, or not an object of entries", async () => {
    const e = await openError(writeHostile("notjson.safetensors", header("{\"w\": {dtype: F32"), new Uint8Array(8)))
    expect(e.message).toMatch(/not valid UTF-8 JSON/)
    const e2 = await openError(writeHostile("array.safetensors", header("[1, 2, 3]"), new Uint8Array(8)))
    expect(e2.message).toMatch(/must be an object/)
    const e3 = await openError(writeHostile("dtype.safetensors", header(JSON.stringify({ w: { dtype: "Q4", shape: [2], data_offsets: [0, 1] } })), new Uint8Array(8)))
    expect(e3.message).toMatch(/w".*unknown dtype "Q4"/)
    const e4 = await openError(writeHostile("neg.safetensors", header(JSON.stringify({ w: { dtype: "U8", shape: [-2], data_offsets: [0, 2] } })), new Uint8Array(8)))
    expect(e4.message).toMatch(/shape must be a list of non-negative integers/)
  })

  it("a merge over a corrupt model fails with the file and tensor in the message", async () => {
    const dir = tempDir("corrupt")
    fs.cpSync(path.join(root, "sharded"), dir, { recursive: true })
    const shard = fs.readdirSync(dir).find((f) => f.endsWith(".safetensors"))!
    const bytes = fs.readFileSync(path.join(dir, shard))
    fs.writeFileSync(path.join(dir, shard), bytes.subarray(0, bytes.length - 100))
    await expect(runStep(merge, { models: [path.join(root, "sharded"), dir] }, { method: "linear", parameters: { weight: 1 } }))
      .rejects.toThrow(new RegExp(`${shard}: tensor ".*": data_offsets .* run past the end of the file`))
  })
})
