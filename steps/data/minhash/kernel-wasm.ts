/**
 * The MinHash minima loop as a WebAssembly SIMD kernel, assembled here from its instructions (no
 * toolchain: the bytes below are the whole module). For each group of four hash functions it keeps
 * four running minima in one i32x4 over all shingles:  v = a*lo + c*hi + b  (mod 2^32, signed min),
 * exactly the arithmetic of the scalar loop in signature.ts, four lanes per instruction.
 *
 *   minima(lo, hi, count, coef, groups, out)   all pointers are byte offsets into the module's memory
 *     lo, hi:  count int32 shingle lanes (count >= 1)
 *     coef:    groups x 48 bytes: a[4], c[4], b[4] as int32
 *     out:     groups x 4 int32 minima
 */

// the little of the WebAssembly JS API used here (the project's lib settings carry no wasm typings)
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { readonly exports: Record<string, unknown> }
}

// opcodes used (WebAssembly core + fixed-width SIMD)
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22
const I32_CONST = 0x41, I32_ADD = 0x6a, I32_SHL = 0x74, I32_LT_U = 0x49, I32_LOAD = 0x28
const LOOP = 0x03, BR_IF = 0x0d, END = 0x0b, VOID = 0x40
const SIMD = 0xfd, V128 = 0x7b, I32 = 0x7f
const V128_LOAD = [SIMD, 0x00], V128_STORE = [SIMD, 0x0b], I32X4_SPLAT = [SIMD, 0x11]
const I32X4_ADD = [SIMD, 0xae, 0x01], I32X4_MUL = [SIMD, 0xb5, 0x01], I32X4_MIN_S = [SIMD, 0xb6, 0x01]
const V128_CONST = [SIMD, 0x0c]

const uleb = (n: number): Array<number> => {
  const out: Array<number> = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}
const vec = (items: Array<number>): Array<number> => [...uleb(items.length), ...items]
const section = (id: number, body: Array<number>): Array<number> => [id, ...uleb(body.length), ...body]
const str = (s: string): Array<number> => vec([...Buffer.from(s, "utf8")])

// params 0 lo, 1 hi, 2 count, 3 coef, 4 pairs, 5 out; locals 6 end, 7 g, 8 p, 9 q (i32);
// 10 a0, 11 c0, 12 b0, 13 m0, 14 a1, 15 c1, 16 b1, 17 m1, 18 lo splat, 19 hi splat (v128)
const get = (i: number) => [LOCAL_GET, i]
const set = (i: number) => [LOCAL_SET, i]
const mem = (align: number, offset: number) => [align, ...uleb(offset)]
const MAX = [...V128_CONST, ...new Array(4).fill([0xff, 0xff, 0xff, 0x7f]).flat()]
// m = min_s(m, a*L + c*H + b)
const step = (a: number, c: number, b: number, m: number) => [
  ...get(m),
  ...get(a), ...get(18), ...I32X4_MUL,
  ...get(c), ...get(19), ...I32X4_MUL,
  ...I32X4_ADD, ...get(b), ...I32X4_ADD,
  ...I32X4_MIN_S, ...set(m)
]
const code: Array<number> = [
  ...uleb(2), ...uleb(4), I32, ...uleb(10), V128,
  // end = lo + count*4
  ...get(0), ...get(2), I32_CONST, 2, I32_SHL, I32_ADD, ...set(6),
  I32_CONST, 0, ...set(7),
  LOOP, VOID,
  //   two groups of four functions: a, c, b at coef[0, 16, 32] and coef[48, 64, 80]
  ...[10, 11, 12, 14, 15, 16].flatMap((local, i) => [...get(3), ...V128_LOAD, ...mem(4, i * 16), ...set(local)]),
  ...MAX, ...set(13),
  ...MAX, ...set(17),
  ...get(0), ...set(8),
  ...get(1), ...set(9),
  LOOP, VOID,
  ...get(8), I32_LOAD, ...mem(2, 0), ...I32X4_SPLAT, ...set(18),
  ...get(9), I32_LOAD, ...mem(2, 0), ...I32X4_SPLAT, ...set(19),
  ...step(10, 11, 12, 13),
  ...step(14, 15, 16, 17),
  ...get(9), I32_CONST, 4, I32_ADD, ...set(9),
  ...get(8), I32_CONST, 4, I32_ADD, LOCAL_TEE, 8, ...get(6), I32_LT_U, BR_IF, 0,
  END,
  //   out[0..32) = m0, m1; coef += 96; out += 32
  ...get(5), ...get(13), ...V128_STORE, ...mem(4, 0),
  ...get(5), ...get(17), ...V128_STORE, ...mem(4, 16),
  ...get(5), I32_CONST, 32, I32_ADD, ...set(5),
  ...get(3), I32_CONST, 0xe0, 0x00, I32_ADD, ...set(3),
  ...get(7), I32_CONST, 1, I32_ADD, LOCAL_TEE, 7, ...get(4), I32_LT_U, BR_IF, 0,
  END,
  END
]

// ---- words(text, len, lo, hi, tables) -> n -------------------------------------------------------
// The word hash lanes of an ASCII text (len bytes at `text`, followed by one separator byte): tables
// holds 128 bytes "is a separator" then 128 bytes "lower-cased byte". Each word's lanes are the
// MurmurHash3 pass of hash.ts's hashString32 (seeds LANE_SEED_LO and LANE_SEED_HI, fmix32 of h ^ length).
const I32_XOR = 0x73, I32_MUL = 0x6c, I32_SHR_U = 0x76, I32_ROTL = 0x77, I32_LOAD8_U = 0x2d, I32_STORE = 0x36
const I32_SUB = 0x6b
const IF = 0x04, ELSE = 0x05, CALL = 0x10
const sleb = (v: number): Array<number> => {
  const out: Array<number> = []
  v |= 0
  for (;;) {
    const b = v & 0x7f
    v >>= 7
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return [...out, b]
    out.push(b | 0x80)
  }
}
const k32 = (v: number) => [I32_CONST, ...sleb(v)]
// fmix32(h): local 0
const fmixCode: Array<number> = [
  0,
  ...get(0), ...get(0), ...k32(16), I32_SHR_U, I32_XOR, ...set(0),
  ...get(0), ...k32(0x85ebca6b), I32_MUL, ...set(0),
  ...get(0), ...get(0), ...k32(13), I32_SHR_U, I32_XOR, ...set(0),
  ...get(0), ...k32(0xc2b2ae35), I32_MUL, ...set(0),
  ...get(0), ...get(0), ...k32(16), I32_SHR_U, I32_XOR,
  END
]
// params 0 text, 1 len, 2 lo, 3 hi, 4 tables; locals 5 end, 6 w, 7 hl, 8 hh, 9 kk, 10 ch, 11 n
const SEED_LO = 0x9747b28c, SEED_HI = 0x5bd1e995
const lane = (h: number) => [
  ...get(h), ...get(9), I32_XOR, ...k32(13), I32_ROTL, ...k32(5), I32_MUL, ...k32(0xe6546b64), I32_ADD, ...set(h)
]
const wordsCode: Array<number> = [
  ...uleb(1), ...uleb(7), I32,
  ...get(0), ...get(1), I32_ADD, ...k32(1), I32_ADD, ...set(5),
  ...k32(SEED_LO), ...set(7),
  ...k32(SEED_HI), ...set(8),
  LOOP, VOID,
  ...get(0), I32_LOAD8_U, ...mem(0, 0), ...set(10),
  ...get(4), ...get(10), I32_ADD, I32_LOAD8_U, ...mem(0, 0),
  IF, VOID,
  //   a separator: end the word being read, if any
  ...get(6),
  IF, VOID,
  ...get(2), ...get(11), ...k32(2), I32_SHL, I32_ADD, ...get(7), ...get(6), I32_XOR, CALL, 0, I32_STORE, ...mem(2, 0),
  ...get(3), ...get(11), ...k32(2), I32_SHL, I32_ADD, ...get(8), ...get(6), I32_XOR, CALL, 0, I32_STORE, ...mem(2, 0),
  ...get(11), ...k32(1), I32_ADD, ...set(11),
  ...k32(0), ...set(6),
  ...k32(SEED_LO), ...set(7),
  ...k32(SEED_HI), ...set(8),
  END,
  ELSE,
  //   a word byte: k = rotl(lower(ch) * C1, 15) * C2, then one round per lane
  ...get(4), ...get(10), I32_ADD, I32_LOAD8_U, ...mem(0, 128),
  ...k32(0xcc9e2d51), I32_MUL, ...k32(15), I32_ROTL, ...k32(0x1b873593), I32_MUL, ...set(9),
  ...lane(7),
  ...lane(8),
  ...get(6), ...k32(1), I32_ADD, ...set(6),
  END,
  ...get(0), ...k32(1), I32_ADD, LOCAL_TEE, 0, ...get(5), I32_LT_U, BR_IF, 0,
  END,
  ...get(11),
  END
]

// ---- shingles(lo, hi, count, width, sLo, sHi) --------------------------------------------------------
// hash.ts's shingleHashes for count >= 1 shingles of `width` words (i32 arithmetic wraps as JS's does)
// params 0 lo, 1 hi, 2 count, 3 width, 4 sLo, 5 sHi; locals 6 k, 7 a, 8 b, 9 at
const I32_NE = 0x47
const shinglesCode: Array<number> = [
  ...uleb(1), ...uleb(4), I32,
  LOOP, VOID,
  ...k32(0x2545f491), ...get(3), I32_XOR, ...set(7),
  ...k32(0x6c8e9cf5), ...get(3), I32_XOR, ...set(8),
  ...k32(0), ...set(6),
  LOOP, VOID,
  ...get(6), ...k32(2), I32_SHL, ...set(9),
  ...get(7), ...get(0), ...get(9), I32_ADD, I32_LOAD, ...mem(2, 0), I32_XOR, ...k32(0x01000193), I32_MUL, ...get(6), I32_ADD, ...set(7),
  ...get(8), ...get(1), ...get(9), I32_ADD, I32_LOAD, ...mem(2, 0), I32_XOR, ...k32(0x5bd1e995), I32_MUL, ...get(6), I32_ADD, ...set(8),
  ...get(8), ...get(8), ...k32(15), I32_SHR_U, I32_XOR, ...set(8),
  ...get(6), ...k32(1), I32_ADD, LOCAL_TEE, 6, ...get(3), I32_LT_U, BR_IF, 0,
  END,
  ...get(4), ...get(7), CALL, 0, I32_STORE, ...mem(2, 0),
  ...get(5), ...get(8), ...get(7), I32_XOR, CALL, 0, I32_STORE, ...mem(2, 0),
  ...[0, 1, 4, 5].flatMap((ptr) => [...get(ptr), ...k32(4), I32_ADD, ...set(ptr)]),
  ...get(2), ...k32(1), I32_SUB, LOCAL_TEE, 2, ...k32(0), I32_NE, BR_IF, 0,
  END,
  END
]

const bytes = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [
    3,
    0x60, ...vec(new Array(6).fill(I32)), 0, // 0: minima, 6 x i32 -> ()
    0x60, ...vec([I32]), ...vec([I32]), // 1: fmix32, i32 -> i32
    0x60, ...vec(new Array(5).fill(I32)), ...vec([I32]) // 2: words, 5 x i32 -> i32
  ]),
  ...section(3, [4, 1, 0, 2, 0]), // functions: 0 fmix32, 1 minima, 2 words, 3 shingles
  ...section(5, [1, 0x00, 1]), // one memory, 1 page to start
  ...section(7, [4, ...str("minima"), 0x00, 1, ...str("words"), 0x00, 2, ...str("shingles"), 0x00, 3, ...str("memory"), 0x02, 0]),
  ...section(10, [
    4,
    ...[fmixCode, code, wordsCode, shinglesCode].flatMap((f) => [...uleb(f.length), ...f])
  ])
])

export interface MinimaKernel {
  readonly minima: (lo: number, hi: number, count: number, coef: number, pairs: number, out: number) => void
  readonly words: (text: number, len: number, lo: number, hi: number, tables: number) => number
  readonly shingles: (lo: number, hi: number, count: number, width: number, sLo: number, sHi: number) => void
  readonly memory: WasmMemory
}

let compiled: object | undefined

/**
 * A kernel instance with its own memory (the module is compiled once per thread), or undefined where
 * WebAssembly SIMD is not available (signature.ts then signs in plain JS).
 */
export const minimaKernel = (): MinimaKernel | undefined => {
  if (typeof WebAssembly === "undefined") return undefined
  let instance: { readonly exports: Record<string, unknown> }
  try {
    compiled ??= new WebAssembly.Module(bytes)
    instance = new WebAssembly.Instance(compiled)
  } catch {
    return undefined // an engine without SIMD rejects the module
  }
  const e = instance.exports as unknown as { minima: MinimaKernel["minima"]; words: MinimaKernel["words"]; shingles: MinimaKernel["shingles"]; memory: WasmMemory }
  return { minima: e.minima, words: e.words, shingles: e.shingles, memory: e.memory }
}
