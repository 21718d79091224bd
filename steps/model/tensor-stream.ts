/**
 * Chunked tensor streaming: every merge reads its inputs and writes its output in chunks of
 * `chunkElements` elements, so peak memory is a few chunks per input, whatever the tensor's size.
 * Methods that need whole-tensor statistics (norms, top-k thresholds, L1 sums) make extra passes
 * over the chunks instead of holding the tensor; a tensor that fits in one chunk is read once.
 */
import { dtypeSizes, encodeFromF32, isFloatDtype } from "./safetensors/dtype.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"
import { SafetensorsError } from "./safetensors/header.ts"
import { ChunkReader } from "./safetensors/reader.ts"
import type { TensorRef } from "./safetensors/reader.ts"

/** 64 Ki elements: 256 KiB of float32 per input, so the arrays a method combines stay in cache (1 Mi ran 2x slower) */
export const chunkElements = 1 << 16

/** byte copies need no arithmetic, so they move in larger pieces: fewer syscalls */
export const rawCopyBytes = 8 << 20

export type Sink = (bytes: Uint8Array) => Promise<void>

/** Float32 views of the same element range of several tensors. */
export class ChunkedInputs {
  readonly chunks: number
  private readonly readers: Array<ChunkReader>
  private readonly buffers: Array<Float32Array>
  private readonly loaded: Array<number>

  constructor(
    readonly refs: ReadonlyArray<TensorRef>,
    readonly numel: number,
    readonly chunkSize: number = chunkElements
  ) {
    this.chunks = Math.max(1, Math.ceil(numel / chunkSize))
    const size = Math.min(numel, chunkSize)
    this.readers = refs.map(() => new ChunkReader())
    this.buffers = refs.map(() => new Float32Array(size))
    this.loaded = refs.map(() => -1)
  }

  range(chunk: number): { start: number; count: number } {
    const start = chunk * this.chunkSize
    return { start, count: Math.min(this.chunkSize, this.numel - start) }
  }

  /** Input `i`'s values in `chunk` (a view valid until the next load of the same input). */
  async load(i: number, chunk: number): Promise<Float32Array> {
    const { start, count } = this.range(chunk)
    const buf = this.buffers[i]!
    if (this.loaded[i] !== chunk) {
      await this.readers[i]!.readF32(this.refs[i]!, start, count, buf)
      this.loaded[i] = chunk
    }
    return buf.subarray(0, count)
  }
}

/** Turns float32 chunks into output bytes, reusing one buffer. */
export class Encoder {
  private buf = new Uint8Array(0)
  constructor(readonly dtype: FloatDtype) {}

  encode(values: Float32Array): Uint8Array {
    const bytes = values.length * dtypeSizes[this.dtype]!
    if (this.buf.length < bytes) this.buf = new Uint8Array(bytes)
    const out = this.buf.subarray(0, bytes)
    encodeFromF32(this.dtype, values, out, values.length)
    return out
  }
}

/**
 * Copies one tensor to the sink: raw bytes when the dtype is kept (bit-exact, any dtype), converted
 * through float32 when a float tensor changes dtype, multiplied by `scale` when one is given.
 */
export const copyTensor = async (ref: TensorRef, outDtype: string, sink: Sink, scale?: number): Promise<void> => {
  const { info } = ref
  if (outDtype === info.dtype && (scale === undefined || scale === 1)) {
    const total = info.end - info.begin
    const step = rawCopyBytes
    const buf = new Uint8Array(Math.min(step, total))
    for (let off = 0; off < total; off += step) {
      const view = buf.subarray(0, Math.min(step, total - off))
      await ref.file.readBytes(info, off, view)
      await sink(view)
    }
    return
  }
  if (!isFloatDtype(info.dtype) || !isFloatDtype(outDtype)) {
    throw new SafetensorsError(ref.file.file, info.name, `cannot convert ${info.dtype} to ${outDtype} (only F32, F16, BF16 convert)`)
  }
  const inputs = new ChunkedInputs([ref], info.numel)
  const enc = new Encoder(outDtype)
  for (let c = 0; c < inputs.chunks; c++) {
    const v = await inputs.load(0, c)
    if (scale !== undefined && scale !== 1) {
      const s = Math.fround(scale)
      for (let i = 0; i < v.length; i++) v[i] = v[i]! * s
    }
    await sink(enc.encode(v))
  }
}
