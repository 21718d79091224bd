/**
 * Reading safetensors files and Hugging Face model directories (one `model.safetensors`, or shards
 * listed in `model.safetensors.index.json`) tensor by tensor with positional reads: nothing is mapped
 * or loaded whole, so memory stays at the size of the chunk being read.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { decodeToF32, dtypeSizes, isFloatDtype } from "./dtype.ts"
import { headerLength, parseHeader, SafetensorsError } from "./header.ts"
import type { Header, TensorInfo } from "./header.ts"

export class SafetensorsFile {
  private constructor(
    readonly file: string,
    readonly size: number,
    readonly header: Header,
    private readonly handle: fs.FileHandle
  ) {}

  static async open(file: string): Promise<SafetensorsFile> {
    let handle: fs.FileHandle
    try {
      handle = await fs.open(file, "r")
    } catch (e) {
      throw new SafetensorsError(file, undefined, `cannot open: ${(e as Error).message}`)
    }
    try {
      const { size } = await handle.stat()
      const prefix = new Uint8Array(8)
      if (size >= 8) await readFully(handle, file, prefix, 0)
      const n = headerLength(file, prefix, size)
      const json = new Uint8Array(n)
      await readFully(handle, file, json, 8)
      return new SafetensorsFile(file, size, parseHeader(file, json, size), handle)
    } catch (e) {
      await handle.close()
      throw e
    }
  }

  get tensors(): ReadonlyArray<TensorInfo> {
    return this.header.tensors
  }

  /** Reads `into.length` bytes of a tensor's data starting `byteStart` bytes into it. */
  async readBytes(info: TensorInfo, byteStart: number, into: Uint8Array): Promise<void> {
    if (byteStart < 0 || info.begin + byteStart + into.length > info.end) {
      throw new SafetensorsError(this.file, info.name, `read of ${into.length} bytes at ${byteStart} is outside the tensor`)
    }
    await readFully(this.handle, this.file, into, info.begin + byteStart, info.name)
  }

  close(): Promise<void> {
    return this.handle.close()
  }
}

const readFully = async (h: fs.FileHandle, file: string, into: Uint8Array, position: number, tensor?: string): Promise<void> => {
  let done = 0
  while (done < into.length) {
    const { bytesRead } = await h.read(into, done, into.length - done, position + done)
    if (bytesRead === 0) throw new SafetensorsError(file, tensor, `unexpected end of file at byte ${position + done}`)
    done += bytesRead
  }
}

/** A tensor of a model and the file it lives in. */
export interface TensorRef {
  readonly file: SafetensorsFile
  readonly info: TensorInfo
}

/**
 * Scratch buffers for chunked float reads: one raw byte buffer reused for every read, so reading a
 * tensor in chunks costs a chunk of memory, not a tensor.
 */
export class ChunkReader {
  private raw = new Uint8Array(0)

  /** Reads elements [start, start+count) of a float tensor into `out` as float32. */
  async readF32(ref: TensorRef, start: number, count: number, out: Float32Array): Promise<void> {
    const { info } = ref
    if (!isFloatDtype(info.dtype)) {
      throw new SafetensorsError(ref.file.file, info.name, `dtype ${info.dtype} cannot be merged (only F32, F16, BF16)`)
    }
    const size = dtypeSizes[info.dtype]!
    const bytes = count * size
    if (this.raw.length < bytes) this.raw = new Uint8Array(bytes)
    const view = this.raw.subarray(0, bytes)
    await ref.file.readBytes(info, start * size, view)
    decodeToF32(info.dtype, view, out, count)
  }
}

export const indexFileName = "model.safetensors.index.json"

/** The tensors of a model directory, by name, across its shards. */
export class ModelReader {
  private constructor(
    readonly dir: string,
    readonly files: ReadonlyArray<SafetensorsFile>,
    readonly tensors: ReadonlyMap<string, TensorRef>,
    /** tensor names in the order the model stores them (shard order, then data order) */
    readonly names: ReadonlyArray<string>
  ) {}

  static async open(dir: string): Promise<ModelReader> {
    const shardNames = await listShards(dir)
    const files: Array<SafetensorsFile> = []
    try {
      for (const s of shardNames.files) files.push(await SafetensorsFile.open(path.join(dir, s)))
    } catch (e) {
      await Promise.all(files.map((f) => f.close()))
      throw e
    }
    const tensors = new Map<string, TensorRef>()
    const names: Array<string> = []
    for (const f of files) {
      for (const info of f.tensors) {
        const prev = tensors.get(info.name)
        if (prev !== undefined) {
          await Promise.all(files.map((x) => x.close()))
          throw new SafetensorsError(f.file, info.name, `tensor also appears in ${prev.file.file}`)
        }
        tensors.set(info.name, { file: f, info })
        names.push(info.name)
      }
    }
    if (shardNames.weightMap !== undefined) {
      for (const [name, shard] of Object.entries(shardNames.weightMap)) {
        const ref = tensors.get(name)
        if (ref === undefined || path.basename(ref.file.file) !== shard) {
          await Promise.all(files.map((x) => x.close()))
          throw new SafetensorsError(path.join(dir, indexFileName), name, `listed in ${shard} but not found there`)
        }
      }
    }
    return new ModelReader(dir, files, tensors, names)
  }

  get(name: string): TensorRef {
    const ref = this.tensors.get(name)
    if (ref === undefined) throw new SafetensorsError(this.dir, name, "no such tensor in this model")
    return ref
  }

  close(): Promise<void> {
    return Promise.all(this.files.map((f) => f.close())).then(() => undefined)
  }
}

const listShards = async (dir: string): Promise<{ files: Array<string>; weightMap?: Record<string, string> }> => {
  const indexPath = path.join(dir, indexFileName)
  let indexText: string | undefined
  try {
    indexText = await fs.readFile(indexPath, "utf-8")
  } catch {
    indexText = undefined
  }
  if (indexText !== undefined) {
    let index: unknown
    try {
      index = JSON.parse(indexText)
    } catch (e) {
      throw new SafetensorsError(indexPath, undefined, `not valid JSON (${(e as Error).message})`)
    }
    const weightMap = (index as { weight_map?: unknown } | null)?.weight_map
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)
      || !Object.values(weightMap).every((v) => typeof v === "string")) {
      throw new SafetensorsError(indexPath, undefined, "weight_map must be an object of tensor name -> shard file")
    }
    const files = [...new Set(Object.values(weightMap as Record<string, string>))]
    for (const f of files) {
      if (f !== path.basename(f) || f.startsWith(".")) {
        throw new SafetensorsError(indexPath, undefined, `shard "${f}" must be a plain file name in the model directory`)
      }
    }
    return { files: files.sort(), weightMap: weightMap as Record<string, string> }
  }
  let entries: Array<string>
  try {
    entries = await fs.readdir(dir)
  } catch (e) {
    throw new SafetensorsError(dir, undefined, `cannot read model directory: ${(e as Error).message}`)
  }
  const files = entries.filter((f) => f.endsWith(".safetensors") && !f.startsWith("adapter_")).sort()
  if (files.length === 0) {
    const hint = entries.some((f) => f.endsWith(".bin") || f.endsWith(".pt"))
      ? " (only pickle .bin/.pt weights found: anneal reads safetensors only, never unpickles)"
      : ""
    throw new SafetensorsError(dir, undefined, `no .safetensors weights found${hint}`)
  }
  return { files }
}
