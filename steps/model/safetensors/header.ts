/**
 * The safetensors header: 8 bytes of little-endian length N, then N bytes of JSON
 * `{"__metadata__": {..}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ...}`, then the data.
 * Everything here treats the file as hostile: the length is bounded by the file size (and a hard cap)
 * before anything is allocated, and every tensor's offsets must lie inside the file, not overlap, and
 * match dtype size x shape. A violation is a SafetensorsError naming the file and the tensor.
 */
import { dtypeSizes } from "./dtype.ts"

/** safetensors itself refuses headers above 100 MB; so do we. */
export const maxHeaderBytes = 100_000_000

export class SafetensorsError extends Error {
  readonly _tag = "SafetensorsError"
  constructor(
    readonly file: string,
    readonly tensor: string | undefined,
    readonly detail: string
  ) {
    super(`${file}${tensor !== undefined ? `: tensor "${tensor}"` : ""}: ${detail}`)
  }
}

export interface TensorInfo {
  readonly name: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  /** number of elements */
  readonly numel: number
  /** absolute byte offsets in the file */
  readonly begin: number
  readonly end: number
}

export interface Header {
  /** byte length of the JSON header (N) */
  readonly headerLength: number
  readonly metadata: Readonly<Record<string, string>> | undefined
  /** tensors in data order (by begin offset) */
  readonly tensors: ReadonlyArray<TensorInfo>
}

/** Validates the 8-byte prefix against the file size; returns N. */
export const headerLength = (file: string, prefix: Uint8Array, fileSize: number): number => {
  if (fileSize < 8 || prefix.length < 8) {
    throw new SafetensorsError(file, undefined, `file is ${fileSize} bytes, too short for a safetensors header`)
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8)
  const n = view.getBigUint64(0, true)
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(file, undefined, `header length ${n} is beyond the end of the file (${fileSize} bytes): truncated or not safetensors`)
  }
  if (n > BigInt(maxHeaderBytes)) {
    throw new SafetensorsError(file, undefined, `header length ${n} exceeds the ${maxHeaderBytes}-byte limit`)
  }
  if (n < 2n) throw new SafetensorsError(file, undefined, `header length ${n} is too small`)
  return Number(n)
}

const isNonNegInt = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0

/** Parses and validates the JSON header; `fileSize` bounds every offset. */
export const parseHeader = (file: string, json: Uint8Array, fileSize: number): Header => {
  const n = json.length
  let raw: unknown
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json))
  } catch (e) {
    throw new SafetensorsError(file, undefined, `header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`)
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SafetensorsError(file, undefined, "header JSON must be an object of tensor entries")
  }
  const dataStart = 8 + n
  const dataSize = fileSize - dataStart
  let metadata: Record<string, string> | undefined
  const tensors: Array<TensorInfo> = []
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)
        || !Object.values(entry).every((v) => typeof v === "string")) {
        throw new SafetensorsError(file, undefined, "__metadata__ must be an object of strings")
      }
      metadata = entry as Record<string, string>
      continue
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new SafetensorsError(file, name, "entry must be an object with dtype, shape and data_offsets")
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>
    if (typeof dtype !== "string" || dtypeSizes[dtype] === undefined) {
      throw new SafetensorsError(file, name, `unknown dtype ${JSON.stringify(dtype)}`)
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new SafetensorsError(file, name, `shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`)
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      throw new SafetensorsError(file, name, `data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`)
    }
    const [b, e] = offsets as [number, number]
    if (b > e) throw new SafetensorsError(file, name, `data_offsets [${b}, ${e}] end before they begin`)
    if (e > dataSize) {
      throw new SafetensorsError(file, name, `data_offsets [${b}, ${e}] run past the end of the file (${dataSize} data bytes): truncated?`)
    }
    let numel = 1
    for (const d of shape as Array<number>) {
      numel *= d
      if (!Number.isSafeInteger(numel)) throw new SafetensorsError(file, name, `shape ${JSON.stringify(shape)} is too large`)
    }
    const bytes = numel * dtypeSizes[dtype]!
    if (bytes !== e - b) {
      throw new SafetensorsError(file, name, `holds ${e - b} bytes but ${dtype} x ${JSON.stringify(shape)} needs ${bytes}`)
    }
    tensors.push({ name, dtype, shape: shape as Array<number>, numel, begin: dataStart + b, end: dataStart + e })
  }
  tensors.sort((x, y) => x.begin - y.begin || x.end - y.end)
  for (let i = 1; i < tensors.length; i++) {
    const prev = tensors[i - 1]!
    const cur = tensors[i]!
    if (cur.begin < prev.end) {
      throw new SafetensorsError(file, cur.name, `data overlaps tensor "${prev.name}" (bytes ${cur.begin - dataStart} < ${prev.end - dataStart})`)
    }
  }
  return { headerLength: n, metadata, tensors }
}
