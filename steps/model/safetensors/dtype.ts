/**
 * safetensors dtypes, and the conversions between the float ones and float32. Merges compute in
 * float32; these conversions decide what ends up on disk, so they round to nearest-even exactly as
 * torch's `.to(dtype)` does (NaN stays NaN, overflow goes to infinity, subnormals are kept).
 */

export const dtypeSizes: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8
}

/** The dtypes a merge computes on (in float32); every other dtype is copied byte for byte. */
export type FloatDtype = "F32" | "F16" | "BF16"
export const isFloatDtype = (d: string): d is FloatDtype => d === "F32" || d === "F16" || d === "BF16"

/** mergekit / torch spellings -> safetensors dtype names, for `dtype` and `out_dtype` params. */
export const parseDtypeName = (name: string): FloatDtype | undefined => {
  switch (name.toLowerCase()) {
    case "float32":
    case "fp32":
    case "f32":
      return "F32"
    case "float16":
    case "fp16":
    case "f16":
    case "half":
      return "F16"
    case "bfloat16":
    case "bf16":
      return "BF16"
    default:
      return undefined
  }
}

/** float32 bits -> float16 bits, round to nearest even (torch semantics). */
export const f32BitsToF16 = (x: number): number => {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = mant & ((1 << shift) - 1)
    let out = mant >>> shift
    if (rest > half || (rest === half && (out & 1) !== 0)) out++
    return sign | out
  }
  let out = (e << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) !== 0)) out++ // may carry into the exponent: correct
  return sign | out
}

/** float16 bits -> float32 value (exact). */
export const f16ToF32 = (h: number): number => {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

// every half-precision value as float32, made at the first F16 decode rather than when the module loads
// (65,536 calls of cold code: a few ms at every start of the CLI, which registers this step kind)
let f16Values: Float32Array | undefined
const f16Table = (): Float32Array => {
  if (f16Values === undefined) {
    f16Values = new Float32Array(65536)
    for (let i = 0; i < 65536; i++) f16Values[i] = f16ToF32(i)
  }
  return f16Values
}

/**
 * Decodes `count` elements of `dtype` from `src` (raw little-endian bytes) into `out` (float32).
 * `src` must start at an offset that is a multiple of 4 within its ArrayBuffer when dtype is F32.
 */
export const decodeToF32 = (dtype: FloatDtype, src: Uint8Array, out: Float32Array, count: number): void => {
  if (dtype === "F32") {
    out.set(new Float32Array(src.buffer, src.byteOffset, count))
    return
  }
  const halves = new Uint16Array(src.buffer, src.byteOffset, count)
  if (dtype === "BF16") {
    const bits = new Uint32Array(out.buffer, out.byteOffset, count)
    for (let i = 0; i < count; i++) bits[i] = halves[i]! << 16
    return
  }
  const table = f16Table()
  for (let i = 0; i < count; i++) out[i] = table[halves[i]!]!
}

/** Encodes `count` float32 values into `dtype` bytes at `dst` (2- or 4-byte aligned as needed). */
export const encodeFromF32 = (dtype: FloatDtype, src: Float32Array, dst: Uint8Array, count: number): void => {
  if (dtype === "F32") {
    new Float32Array(dst.buffer, dst.byteOffset, count).set(src.subarray(0, count))
    return
  }
  const halves = new Uint16Array(dst.buffer, dst.byteOffset, count)
  const bits = new Uint32Array(src.buffer, src.byteOffset, count)
  if (dtype === "BF16") {
    for (let i = 0; i < count; i++) {
      const x = bits[i]!
      if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
        halves[i] = (x >>> 16) | 0x40 // quiet NaN, as torch does
      } else {
        halves[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16
      }
    }
    return
  }
  for (let i = 0; i < count; i++) halves[i] = f32BitsToF16(bits[i]!)
}
