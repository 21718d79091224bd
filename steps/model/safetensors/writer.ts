/**
 * Writing safetensors, streamed: the caller declares every tensor (name, dtype, shape) up front, which
 * fixes the header and the shard boundaries, then writes each tensor's bytes in order, in as many
 * pieces as it likes. The header is laid out as the Rust `safetensors` crate does (metadata first,
 * entries in data order, padded with spaces to 8 bytes), so reading a file and writing it back yields
 * the same bytes.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { dtypeSizes } from "./dtype.ts"
import { indexFileName } from "./reader.ts"

export interface TensorDecl {
  readonly name: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
}

export const byteSize = (t: TensorDecl): number => {
  const size = dtypeSizes[t.dtype]
  if (size === undefined) throw new Error(`tensor "${t.name}": unknown dtype ${t.dtype}`)
  return t.shape.reduce((a, b) => a * b, 1) * size
}

/** The header bytes (length prefix included) for tensors stored back to back in the given order. */
export const encodeHeader = (tensors: ReadonlyArray<TensorDecl>, metadata?: Readonly<Record<string, string>>): Uint8Array => {
  const parts: Array<string> = []
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`)
  let offset = 0
  for (const t of tensors) {
    const end = offset + byteSize(t)
    parts.push(`${JSON.stringify(t.name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":${JSON.stringify(t.shape)},"data_offsets":[${offset},${end}]}`)
    offset = end
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`)
  const padded = Math.ceil(json.length / 8) * 8
  const out = new Uint8Array(8 + padded).fill(0x20, 8)
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true)
  out.set(json, 8)
  return out
}

export interface WriterOptions {
  /** split into shards of at most this many data bytes (a larger single tensor gets its own shard) */
  readonly maxShardBytes?: number
  /** the `__metadata__` of every shard; defaults to {format: "pt"} as transformers writes; null: none */
  readonly metadata?: Readonly<Record<string, string>> | null | undefined
  /** name of the file when everything fits in one shard */
  readonly singleFileName?: string
}

interface Shard {
  readonly file: string
  readonly tensors: Array<TensorDecl>
  dataBytes: number
}

export const defaultMaxShardBytes = 5 * 1024 ** 3

/**
 * Writes a model's tensors into `dir` (as `model.safetensors`, or `model-0000i-of-0000n.safetensors`
 * plus `model.safetensors.index.json`). Call `write` with each tensor's bytes in declaration order.
 */
export class ModelWriter {
  private shardIndex = -1
  private tensorIndex = -1
  private remaining = 0
  private position = 0
  private handle: fs.FileHandle | undefined
  private readonly flat: Array<{ shard: number; decl: TensorDecl; bytes: number }>
  private cursor = 0

  private constructor(
    readonly dir: string,
    private readonly shards: ReadonlyArray<Shard>,
    private readonly metadata: Readonly<Record<string, string>> | undefined
  ) {
    this.flat = shards.flatMap((s, i) => s.tensors.map((decl) => ({ shard: i, decl, bytes: byteSize(decl) })))
  }

  static create(dir: string, tensors: ReadonlyArray<TensorDecl>, options: WriterOptions = {}): ModelWriter {
    const max = options.maxShardBytes ?? defaultMaxShardBytes
    const seen = new Set<string>()
    const shards: Array<Shard> = []
    let current: Shard | undefined
    for (const t of tensors) {
      if (seen.has(t.name)) throw new Error(`tensor "${t.name}" is written twice`)
      seen.add(t.name)
      const bytes = byteSize(t)
      if (current === undefined || (current.tensors.length > 0 && current.dataBytes + bytes > max)) {
        current = { file: "", tensors: [], dataBytes: 0 }
        shards.push(current)
      }
      current.tensors.push(t)
      current.dataBytes += bytes
    }
    if (shards.length === 0) shards.push({ file: "", tensors: [], dataBytes: 0 })
    const n = shards.length
    const pad = (i: number) => String(i).padStart(5, "0")
    shards.forEach((s, i) => {
      ;(s as { file: string }).file = n === 1 ? (options.singleFileName ?? "model.safetensors") : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`
    })
    const metadata = options.metadata === undefined ? { format: "pt" } : options.metadata ?? undefined
    return new ModelWriter(dir, shards, metadata)
  }

  /** the tensor the next `write` continues, or undefined when all are written */
  get current(): TensorDecl | undefined {
    return this.flat[this.cursor]?.decl
  }

  private async advance(): Promise<void> {
    const next = this.flat[this.cursor]!
    if (next.shard !== this.shardIndex) {
      await this.handle?.close()
      this.shardIndex = next.shard
      const shard = this.shards[next.shard]!
      this.handle = await fs.open(path.join(this.dir, shard.file), "w")
      const header = encodeHeader(shard.tensors, this.metadata)
      await this.handle.write(header, 0, header.length, 0)
      this.position = header.length
    }
    this.tensorIndex = this.cursor
    this.remaining = next.bytes
  }

  /** Appends bytes to the current tensor; a tensor is complete once all its bytes are written. */
  async write(bytes: Uint8Array): Promise<void> {
    let off = 0
    while (off < bytes.length) {
      if (this.cursor >= this.flat.length) throw new Error(`more bytes written than the declared tensors hold`)
      if (this.tensorIndex !== this.cursor) await this.advance()
      if (this.remaining === 0) {
        this.cursor++ // a zero-byte tensor
        continue
      }
      const n = Math.min(this.remaining, bytes.length - off)
      let done = 0
      while (done < n) {
        const { bytesWritten } = await this.handle!.write(bytes, off + done, n - done, this.position)
        done += bytesWritten
        this.position += bytesWritten
      }
      off += n
      this.remaining -= n
      if (this.remaining === 0) this.cursor++
    }
  }

  /** Closes the files and writes the shard index; fails if a declared tensor was not fully written. */
  async finish(): Promise<ReadonlyArray<string>> {
    // trailing zero-byte tensors still need their shard opened
    while (this.cursor < this.flat.length) {
      if (this.tensorIndex !== this.cursor) await this.advance()
      if (this.remaining !== 0) throw new Error(`tensor "${this.flat[this.cursor]!.decl.name}" was not fully written`)
      this.cursor++
    }
    if (this.handle === undefined) {
      const shard = this.shards[0]!
      this.handle = await fs.open(path.join(this.dir, shard.file), "w")
      const header = encodeHeader(shard.tensors, this.metadata)
      await this.handle.write(header, 0, header.length, 0)
    }
    await this.handle.close()
    this.handle = undefined
    const files = this.shards.map((s) => s.file)
    if (this.shards.length > 1) {
      const weightMap: Record<string, string> = {}
      for (const s of this.shards) for (const t of s.tensors) weightMap[t.name] = s.file
      const totalSize = this.shards.reduce((a, s) => a + s.dataBytes, 0)
      const index = { metadata: { total_size: totalSize }, weight_map: weightMap }
      await fs.writeFile(path.join(this.dir, indexFileName), JSON.stringify(index, null, 2) + "\n")
      files.push(indexFileName)
    }
    return files
  }

  /** Closes any open file without completing (after a failure). */
  async abort(): Promise<void> {
    await this.handle?.close()
    this.handle = undefined
  }
}
