/**
 * MinHash signing as a WebAssembly SIMD kernel, assembled here from its instructions (no toolchain: the
 * bytes this file builds are the whole module, so the module is reproducible from this source alone).
 * Each function computes exactly what the plain-JS definition in hash.ts / signature.ts computes, in
 * int32 arithmetic that wraps as JS's Math.imul does. All pointers are byte offsets into the module's
 * memory, which starts with two tables written by signature.ts:
 *   0..128    separator table: nonzero for whitespace/punctuation/symbol bytes, 0 for word bytes
 *   128..640  MurmurHash3 block k of each (lower-cased) byte: rotl(ch * C1, 15) * C2, as int32
 *             (SEPARATOR_BLOCK for separators)
 *   640..688  words' buffer
 *   1024..    separator table of UTF-16 code units (65,536 bytes, nonzero for separators)
 *
 *   words(text, len, raw, lo, hi) -> n
 *     the word hash lanes of an ASCII text (len bytes, then a separator byte, then len + 3 bytes it
 *     may read): lo[i], hi[i] = hashString32(word i, LANE_SEED_LO / LANE_SEED_HI). Four stretches of
 *     the text at once, branch-free; the words' (hash state ^ length) pairs go to raw, then one SIMD
 *     pass applies fmix32 to them four words at a time.
 *   shingles(lo, hi, count, width, out)
 *     hash.ts's shingleHashes for count >= 1 shingles of `width` words, four shingles per instruction,
 *     as (lo, hi) pairs at out; reads up to 3 words past the last and writes up to 3 pairs past the
 *     last, then repeats the last pair once more (so that an even count can be passed to minima: the
 *     minimum over a repeated shingle is the same).
 *   minima(sh, count, coef, pairs, out)
 *     for each group of four hash functions, the running minimum of v = a*lo + c*hi + b (signed) over
 *     `count` (even, >= 2) shingle pairs, two groups and two shingles per loop pass;
 *     coef: pairs x 96 bytes (a[4], c[4], b[4] of two groups); out: pairs x 8 int32.
 *   bandKeys(sig, bands, rows, out)
 *     lsh.ts's bandKey of each band of the signature at sig, four bands per instruction.
 *   words16(text, len, raw, lo, hi) -> n
 *     words() for other texts, once normalized and lower-cased, on their UTF-16 code units.
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

/** where the tables lie in the kernel's memory (signature.ts fills them) */
export const SEPARATORS_AT = 0
export const BLOCKS_AT = 128
const PAIRS_AT = 640 // words' buffer: four (lo, hi) pairs, then four moves
const MOVES_AT = 672
export const UNIT_SEPARATORS_AT = 1024
export const TABLES_END = UNIT_SEPARATORS_AT + 65536
/** the block table's entry for a separator byte (no byte's MurmurHash3 block has this value) */
export const SEPARATOR_BLOCK = -1

// ---- a small assembler ----------------------------------------------------------------------------
type Code = Array<number>

const uleb = (n: number): Code => {
  const out: Code = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}
const sleb = (v: number): Code => {
  const out: Code = []
  v |= 0
  for (;;) {
    const b = v & 0x7f
    v >>= 7
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) return [...out, b]
    out.push(b | 0x80)
  }
}
const vec = (items: Code): Code => [...uleb(items.length), ...items]
const section = (id: number, body: Code): Code => [id, ...uleb(body.length), ...body]
const str = (s: string): Code => vec([...Buffer.from(s, "utf8")])

const I32 = 0x7f, V128 = 0x7b
const get = (i: number): Code => [0x20, ...uleb(i)]
const set = (i: number): Code => [0x21, ...uleb(i)]
const tee = (i: number): Code => [0x22, ...uleb(i)]
const k32 = (v: number): Code => [0x41, ...sleb(v)]
const ADD = 0x6a, SUB = 0x6b, MUL = 0x6c, AND = 0x71, XOR = 0x73, SHL = 0x74, SHR_U = 0x76, ROTL = 0x77
const LT_U = 0x49, GT_S = 0x4a, GT_U = 0x4b, SELECT = 0x1b, END = 0x0b
const load8 = (offset: number): Code => [0x2d, 0, ...uleb(offset)]
const load16 = (offset: number): Code => [0x2f, 1, ...uleb(offset)]
const store32 = (offset: number): Code => [0x36, 2, ...uleb(offset)]
const load32 = (offset: number): Code => [0x28, 2, ...uleb(offset)]
const load64 = (offset: number): Code => [0x29, 3, ...uleb(offset)]
const store64 = (offset: number): Code => [0x37, 3, ...uleb(offset)]
// SIMD (0xfd prefix); unaligned accesses, so alignment hints are 0
const simd = (op: number): Code => [0xfd, ...uleb(op)]
const vload = (offset: number): Code => [...simd(0x00), 0, ...uleb(offset)]
const vload32Splat = (offset: number): Code => [...simd(0x09), 2, ...uleb(offset)]
const vstore = (offset: number): Code => [...simd(0x0b), 0, ...uleb(offset)]
const vload32Zero = (offset: number): Code => [...simd(0x5c), 2, ...uleb(offset)]
const vload32Lane = (lane: number, offset = 0): Code => [...simd(0x56), 2, ...uleb(offset), lane]
const extract32 = (lane: number): Code => [...simd(0x1b), lane]
const replace32 = (lane: number): Code => [...simd(0x1c), lane]
const VEQ = simd(0x37), VAND = simd(0x4e), VANDNOT = simd(0x4f), VOR = simd(0x50), VBITSELECT = simd(0x52)
const VSHL = simd(0xab), VSUB = simd(0xb1), VLT_S = simd(0x39)
const vconst = (lane: number): Code => vconst4([lane, lane, lane, lane])
const vconst4 = (lanes: Array<number>): Code => [...simd(0x0c), ...lanes.flatMap((l) => [l & 0xff, (l >>> 8) & 0xff, (l >>> 16) & 0xff, l >>> 24])]
/** i8x16.shuffle of two i32x4 by 32-bit lane numbers (0..3 the first operand, 4..7 the second) */
const shuffle32 = (lanes: Array<number>): Code => [...simd(0x0d), ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3])]
const SPLAT = simd(0x11), VXOR = simd(0x51), VSHR_U = simd(0xad), VADD = simd(0xae), VMUL = simd(0xb5), VMIN_S = simd(0xb6)

/** if (cond) do { body } while (cond): the loop's test at its end, the first one outside */
const whileLoop = (cond: Code, body: Code): Code => [...cond, 0x04, 0x40, 0x03, 0x40, ...body, ...cond, 0x0d, 0, END, END]
const func = (locals: Array<[count: number, type: number]>, body: Code): Code => {
  const f = [...uleb(locals.length), ...locals.flatMap(([n, t]) => [...uleb(n), t]), ...body, END]
  return [...uleb(f.length), ...f]
}

/**
 * fmix32 of the four lanes of local t, left on the stack; c1, c2: locals holding its two multipliers
 * (fmixConstants). Constants live in locals: a v128.const in a loop is rebuilt on every pass.
 */
const vfmix = (t: number, c1: number, c2: number): Code => [
  ...get(t), ...get(t), ...k32(16), ...VSHR_U, ...VXOR, ...set(t),
  ...get(t), ...get(c1), ...VMUL, ...set(t),
  ...get(t), ...get(t), ...k32(13), ...VSHR_U, ...VXOR, ...set(t),
  ...get(t), ...get(c2), ...VMUL, ...set(t),
  ...get(t), ...get(t), ...k32(16), ...VSHR_U, ...VXOR
]

const fmixConstants = (c1: number, c2: number): Code => [...vconst(0x85ebca6b), ...set(c1), ...vconst(0xc2b2ae35), ...set(c2)]

// The module's bytes, assembled when a kernel is first asked for (not at every CLI start that
// registers the data steps: assembling takes a few milliseconds)
const assemble = (): Uint8Array => {
  // ---- 0: fmixPairs(raw, n, lo, hi) -----------------------------------------------------------------
  // lo[i] = fmix32(raw[2i]), hi[i] = fmix32(raw[2i + 1]) for i < n, four at a time (up to 3 past n)
  // params 0 raw, 1 n, 2 lo, 3 hi; locals 4 end (i32); 5 v0, 6 v1, 7 t, 8 9 fmix constants (v128)
  const fmixPairs = func([[1, I32], [5, V128]], [
    ...fmixConstants(8, 9),
    ...get(0), ...get(1), ...k32(3), SHL, ADD, ...set(4),
    ...whileLoop([...get(0), ...get(4), LT_U], [
      ...get(0), ...vload(0), ...set(5),
      ...get(0), ...vload(16), ...set(6),
      ...get(2), ...get(5), ...get(6), ...shuffle32([0, 2, 4, 6]), ...set(7), ...vfmix(7, 8, 9), ...vstore(0),
      ...get(3), ...get(5), ...get(6), ...shuffle32([1, 3, 5, 7]), ...set(7), ...vfmix(7, 8, 9), ...vstore(0),
      ...get(0), ...k32(32), ADD, ...set(0),
      ...get(2), ...k32(16), ADD, ...set(2),
      ...get(3), ...k32(16), ADD, ...set(3)
    ])
  ])

  // ---- 1: minima(sh, count, coef, pairs, out) -------------------------------------------------------
  // params 0 sh, 1 count, 2 coef, 3 pairs, 4 out; locals 5 end, 6 g, 7 p (i32);
  // 8 a0, 9 c0, 10 b0, 11 m0, 12 a1, 13 c1, 14 b1, 15 m1, 16 lo splat, 17 hi splat, 18 0x7fffffff (v128)
  // m = min_s(m, a*lo + c*hi + b)
  const minStep = (a: number, c: number, b: number, m: number): Code => [
    ...get(m),
    ...get(a), ...get(16), ...VMUL,
    ...get(c), ...get(17), ...VMUL,
    ...VADD, ...get(b), ...VADD,
    ...VMIN_S, ...set(m)
  ]
  const minima = func([[3, I32], [11, V128]], [
    ...vconst(0x7fffffff), ...set(18),
    ...get(0), ...get(1), ...k32(3), SHL, ADD, ...set(5),
    ...k32(0), ...set(6),
    0x03, 0x40,
    ...[8, 9, 10, 12, 13, 14].flatMap((local, i) => [...get(2), ...vload(i * 16), ...set(local)]),
    ...get(18), ...set(11),
    ...get(18), ...set(15),
    ...get(0), ...set(7),
    0x03, 0x40,
    //   two shingles per pass (count is even)
    ...[0, 8].flatMap((at) => [
      ...get(7), ...vload32Splat(at), ...set(16),
      ...get(7), ...vload32Splat(at + 4), ...set(17),
      ...minStep(8, 9, 10, 11),
      ...minStep(12, 13, 14, 15)
    ]),
    ...get(7), ...k32(16), ADD, ...tee(7), ...get(5), LT_U, 0x0d, 0,
    END,
    ...get(4), ...get(11), ...vstore(0),
    ...get(4), ...get(15), ...vstore(16),
    ...get(4), ...k32(32), ADD, ...set(4),
    ...get(2), ...k32(96), ADD, ...set(2),
    ...get(6), ...k32(1), ADD, ...tee(6), ...get(3), LT_U, 0x0d, 0,
    END
  ])

  // ---- 2: words(text, len, raw, lo, hi) -> n -------------------------------------------------------
  // The word hash lanes of an ASCII text, on four stretches of it at once, one per SIMD lane: the text is
  // cut at separators near its quarters, and each lane steps through its stretch a byte per step with its
  // word's two MurmurHash3 states (lo and hi lanes in two vectors) and its word length; past its
  // stretch's end a lane reads as separators (the bytes there are read, but masked). Every step each
  // lane's (states ^ length) pair is stored at its own output pointer (through a small buffer in memory),
  // which moves on only where a separator ends a word; the four outputs are far enough apart that the
  // store of one lane never lands on another's words. The loop has no branch on the bytes. Then fmix32 of each
  // lane's words, in text order, into lo/hi. Reads up to len + 3 bytes past the separator after the text.
  // params 0 text, 1 len, 2 raw, 3 lo, 4 hi; locals (i32) 5 at, 6 prev, 7 steps, 8 n, 9 c, 10-13 p[j]
  // (byte pointers), 14-17 o[j] (output pointers), 18-21 b[j] (output starts);
  // (v128) 22 R (bytes left in each stretch), 23 W (word lengths), 24 L, 25 H (states), 26 K (blocks),
  // 27 S (separator masks), 28 X, 29 Y, and constants (a v128.const in a loop is rebuilt every pass)
  // 30 SEPARATOR_BLOCK, 31 1, 32 0, 33 8, 34 MURMUR_N, 35 SEED_LO, 36 SEED_HI
  const SEED_LO = 0x9747b28c, SEED_HI = 0x5bd1e995, MURMUR_N = 0xe6546b64
  const P0 = 10, O0 = 14, B0 = 18, R = 22, W = 23, K = 26, S = 27, X = 28, Y = 29
  const C_SEP = 30, C_ONE = 31, C_ZERO = 32, C_EIGHT = 33, C_N = 34, C_SEED_LO = 35, C_SEED_HI = 36
  // a stretch ends at the first separator at or after `from` (a byte address), never past the text's end
  const cutAt = (from: Code): Code => [
    ...get(6), ...k32(1), ADD, ...from, ...get(6), ...k32(1), ADD, ...from, GT_U, SELECT, ...set(5),
    ...get(0), ...get(1), ADD, ...get(5), ...get(5), ...get(0), ...get(1), ADD, GT_U, SELECT, ...set(5),
    0x02, 0x40, 0x03, 0x40,
    ...get(5), ...load8(0), ...load8(SEPARATORS_AT), 0x0d, 1,
    ...get(5), ...k32(1), ADD, ...set(5),
    0x0c, 0,
    END, END
  ]
  // murmur round of state v with the blocks K, reset to seed where S
  const round4 = (v: number, seed: number): Code => [
    ...get(seed),
    ...get(v), ...get(K), ...VXOR, ...set(X),
    ...get(X), ...k32(13), ...VSHL, ...get(X), ...k32(19), ...VSHR_U, ...VOR, ...set(X),
    ...get(X), ...k32(2), ...VSHL, ...get(X), ...VADD, ...get(C_N), ...VADD,
    ...get(S), ...VBITSELECT, ...set(v)
  ]
  // one step: in each lane the byte `at` after p
  const step = (at: number): Code => [
    //   K = the blocks of the four bytes at p; S = which are separators (or past their stretch)
    ...[0, 1, 2, 3].flatMap((j) => [...get(P0 + j), ...load8(at), ...k32(2), SHL, ...get(K), ...vload32Lane(j, BLOCKS_AT), ...set(K)]),
    ...get(K), ...get(C_SEP), ...VEQ, ...get(R), ...get(C_ONE), ...VLT_S, ...VOR, ...set(S),
    ...get(R), ...get(C_ONE), ...VSUB, ...set(R),
    //   each lane's (states ^ length) pair, and 8 where a separator ends a word, through the buffer
    ...get(24), ...get(W), ...VXOR, ...set(X),
    ...get(25), ...get(W), ...VXOR, ...set(Y),
    ...k32(0), ...get(X), ...get(Y), ...shuffle32([0, 4, 1, 5]), ...vstore(PAIRS_AT),
    ...k32(0), ...get(X), ...get(Y), ...shuffle32([2, 6, 3, 7]), ...vstore(PAIRS_AT + 16),
    ...k32(0), ...get(S), ...get(W), ...get(C_ZERO), ...VEQ, ...VANDNOT, ...get(C_EIGHT), ...VAND, ...vstore(MOVES_AT),
    ...[0, 1, 2, 3].flatMap((j) => [
      ...get(O0 + j), ...k32(0), ...load64(PAIRS_AT + 8 * j), ...store64(0),
      ...get(O0 + j), ...k32(0), ...load32(MOVES_AT + 4 * j), ADD, ...set(O0 + j)
    ]),
    //   the length grows, or restarts at separators; the states take the byte, or restart
    ...get(W), ...get(C_ONE), ...VADD, ...get(S), ...VANDNOT, ...set(W),
    ...round4(24, C_SEED_LO),
    ...round4(25, C_SEED_HI)
  ]
  const words = func([[17, I32], [15, V128]], [
    ...[[C_SEP, SEPARATOR_BLOCK], [C_ONE, 1], [C_ZERO, 0], [C_EIGHT, 8], [C_N, MURMUR_N], [C_SEED_LO, SEED_LO], [C_SEED_HI, SEED_HI]].flatMap(([local, v]) => [...vconst(v!), ...set(local!)]),
    // stretch j = p[j] .. its last byte (a separator); stretch j + 1 starts after it (at most at the end)
    ...get(0), ...set(P0),
    ...k32(-1), ...get(0), ADD, ...set(6),
    ...[1, 2, 3].flatMap((q) => [
      ...cutAt([...get(0), ...get(1), ...k32(q), MUL, ...k32(2), SHR_U, ADD]),
      //   bytes of stretch q - 1
      ...get(R), ...get(5), ...get(P0 + q - 1), SUB, ...k32(1), ADD, ...replace32(q - 1), ...set(R),
      ...get(5), ...k32(1), ADD, ...get(0), ...get(1), ADD, ...get(5), ...k32(1), ADD, ...get(0), ...get(1), ADD, LT_U, SELECT, ...set(P0 + q),
      ...get(5), ...set(6)
    ]),
    ...get(R), ...get(0), ...get(1), ADD, ...get(P0 + 3), SUB, ...k32(1), ADD, ...replace32(3), ...set(R),
    // steps: the longest stretch; lane j's output at raw + 8 * ((p[j] - text) / 2 + 2j + 2)
    ...k32(0), ...set(7),
    ...[0, 1, 2, 3].flatMap((j) => [
      ...get(R), ...extract32(j), ...set(9),
      ...get(9), ...get(7), ...get(9), ...get(7), GT_U, SELECT, ...set(7),
      ...get(2), ...get(P0 + j), ...get(0), SUB, ...k32(1), SHR_U, ...k32(2 * j + 2), ADD, ...k32(3), SHL, ADD, ...tee(B0 + j), ...set(O0 + j)
    ]),
    ...get(C_ZERO), ...set(W),
    ...get(C_SEED_LO), ...set(24),
    ...get(C_SEED_HI), ...set(25),
    //   four steps per pass (steps past the longest stretch read as separators in every lane)
    0x03, 0x40,
    ...[0, 1, 2, 3].flatMap(step),
    ...[0, 1, 2, 3].flatMap((j) => [...get(P0 + j), ...k32(4), ADD, ...set(P0 + j)]),
    ...get(7), ...k32(4), SUB, ...tee(7), ...k32(0), GT_S, 0x0d, 0,
    END,
    //   fmix32 of each lane's words, in order
    ...k32(0), ...set(8),
    ...[0, 1, 2, 3].flatMap((j) => [
      ...get(B0 + j),
      ...get(O0 + j), ...get(B0 + j), SUB, ...k32(3), SHR_U, ...tee(9),
      ...get(3), ...get(8), ...k32(2), SHL, ADD,
      ...get(4), ...get(8), ...k32(2), SHL, ADD, 0x10, 0,
      ...get(8), ...get(9), ADD, ...set(8)
    ]),
    ...get(8)
  ])

  // ---- 5: words16(text, len, raw, lo, hi) -> n -----------------------------------------------------
  // The word hash lanes of a text given as len UTF-16 code units (then one separator unit) with no
  // surrogates, already NFKC-normalized and lower-cased: words are the runs between the code units the
  // table at UNIT_SEPARATORS_AT marks (whitespace, punctuation, symbols), hashed as hashString32 hashes
  // them, block by block of MurmurHash3. One code unit per pass, branch-free: each pass stores the
  // (states ^ length) pair at o, which moves on only where a separator ends a word; then fmix32.
  // params 0 text, 1 len, 2 raw, 3 lo, 4 hi; locals (i32) 5 unit, 6 sep, 7 k, 8 end, 9 hl, 10 hh, 11 w, 12 o
  const words16 = func([[8, I32]], [
    ...get(0), ...get(1), ...k32(1), ADD, ...k32(1), SHL, ADD, ...set(8),
    ...k32(SEED_LO), ...set(9), ...k32(SEED_HI), ...set(10), ...k32(0), ...set(11), ...get(2), ...set(12),
    0x03, 0x40,
    ...get(0), ...load16(0), ...tee(5), ...load8(UNIT_SEPARATORS_AT), ...set(6),
    ...get(5), ...k32(0xcc9e2d51), MUL, ...k32(15), ROTL, ...k32(0x1b873593), MUL, ...set(7),
    ...get(12), ...get(9), ...get(11), XOR, ...store32(0),
    ...get(12), ...get(10), ...get(11), XOR, ...store32(4),
    // o += 8 where this separator ends a word
    ...get(12), ...k32(8), ...k32(0), ...get(11), SELECT, ...k32(0), ...get(6), SELECT, ADD, ...set(12),
    ...[[9, SEED_LO], [10, SEED_HI]].flatMap(([lane, seed]) => [
      ...k32(seed!),
      ...get(lane!), ...get(7), XOR, ...k32(13), ROTL, ...k32(5), MUL, ...k32(MURMUR_N), ADD,
      ...get(6), SELECT, ...set(lane!)
    ]),
    ...k32(0), ...get(11), ...k32(1), ADD, ...get(6), SELECT, ...set(11),
    ...get(0), ...k32(2), ADD, ...tee(0), ...get(8), LT_U, 0x0d, 0,
    END,
    ...get(2), ...get(12), ...get(2), SUB, ...k32(3), SHR_U, ...tee(5), ...get(3), ...get(4), 0x10, 0,
    ...get(5)
  ])

  // ---- 3: shingles(lo, hi, count, width, out) --------------------------------------------------------
  // params 0 lo, 1 hi, 2 count, 3 width, 4 out; locals (i32) 5 i, 6 end, 7 j, 8 k;
  // (v128) 9 a, 10 b, 11 a0, 12 b0, 13 fa, 14 fb, 15 16 the multipliers, 17 18 fmix constants
  const shingles = func([[4, I32], [10, V128]], [
    ...vconst(0x01000193), ...set(15), ...vconst(0x5bd1e995), ...set(16), ...fmixConstants(17, 18),
    ...k32(0x2545f491), ...get(3), XOR, ...SPLAT, ...set(11),
    ...k32(0x6c8e9cf5), ...get(3), XOR, ...SPLAT, ...set(12),
    ...get(2), ...k32(2), SHL, ...set(6),
    ...k32(0), ...set(5),
    0x03, 0x40,
    ...get(11), ...set(9),
    ...get(12), ...set(10),
    ...get(5), ...set(7),
    ...k32(0), ...set(8),
    0x03, 0x40,
    //   a = (a ^ lo[s+k]) * 0x01000193 + k;  b = (b ^ hi[s+k]) * 0x5bd1e995 + k;  b ^= b >>> 15
    ...get(9), ...get(0), ...get(7), ADD, ...vload(0), ...VXOR, ...get(15), ...VMUL, ...get(8), ...SPLAT, ...VADD, ...set(9),
    ...get(10), ...get(1), ...get(7), ADD, ...vload(0), ...VXOR, ...get(16), ...VMUL, ...get(8), ...SPLAT, ...VADD, ...set(10),
    ...get(10), ...get(10), ...k32(15), ...VSHR_U, ...VXOR, ...set(10),
    ...get(7), ...k32(4), ADD, ...set(7),
    ...get(8), ...k32(1), ADD, ...tee(8), ...get(3), LT_U, 0x0d, 0,
    END,
    ...get(9), ...set(13), ...vfmix(13, 17, 18), ...set(13),
    ...get(10), ...get(9), ...VXOR, ...set(14), ...vfmix(14, 17, 18), ...set(14),
    // four (lo, hi) pairs at out + 2i
    ...get(4), ...get(5), ...k32(1), SHL, ADD, ...get(13), ...get(14), ...shuffle32([0, 4, 1, 5]), ...vstore(0),
    ...get(4), ...get(5), ...k32(1), SHL, ADD, ...get(13), ...get(14), ...shuffle32([2, 6, 3, 7]), ...vstore(16),
    ...get(5), ...k32(16), ADD, ...tee(5), ...get(6), LT_U, 0x0d, 0,
    END,
    // out[count] = out[count - 1]: at = out + 8*(count - 1)
    ...get(4), ...get(2), ...k32(3), SHL, ADD, ...k32(8), SUB, ...set(6),
    ...get(6), ...get(6), ...load64(0), ...store64(8)
  ])

  // ---- 4: bandKeys(sig, bands, rows, out) -----------------------------------------------------------
  // lsh.ts's bandKey of bands 0..bands-1 (rows consecutive values each) of the signature at sig, four
  // bands per instruction (lanes gathered from four bands' rows), into out (up to 3 keys past the last).
  // Row by row over all groups of four bands, so that the groups' hash chains overlap.
  // params 0 sig, 1 bands, 2 rows, 3 out; locals (i32) 4 q, 5 p, 6 r, 7 stride, 8 o, 9 end, 10 2 x stride,
  // 11 3 x stride; (v128) 12 h, 13 x, 14 the multiplier, 15 16 fmix constants
  const bandKeys = func([[8, I32], [5, V128]], [
    ...vconst(0x01000193), ...set(14), ...fmixConstants(15, 16),
    ...get(2), ...k32(2), SHL, ...tee(7), ...k32(1), SHL, ...tee(10), ...get(7), ADD, ...set(11),
    ...get(3), ...get(1), ...k32(3), ADD, ...k32(2), SHR_U, ...k32(4), SHL, ADD, ...set(9),
    //   h = 0x811c9dc5 ^ band
    ...k32(0), ...set(4),
    ...get(3), ...set(8),
    0x03, 0x40,
    ...get(8), ...k32(0x811c9dc5), ...get(4), XOR, ...SPLAT, ...vconst4([0, 1, 2, 3]), ...VXOR, ...vstore(0),
    ...get(4), ...k32(4), ADD, ...set(4),
    ...get(8), ...k32(16), ADD, ...tee(8), ...get(9), LT_U, 0x0d, 0,
    END,
    ...k32(0), ...set(6),
    0x03, 0x40,
    ...get(3), ...set(8),
    ...get(0), ...get(6), ...k32(2), SHL, ADD, ...set(5),
    0x03, 0x40,
    //   x = row r of the group's four bands; h = fmix32((h ^ x) * 0x01000193 + r)
    ...get(5), ...vload32Zero(0), ...set(13),
    ...[[1, 7], [2, 10], [3, 11]].flatMap(([lane, by]) => [...get(5), ...get(by!), ADD, ...get(13), ...vload32Lane(lane!), ...set(13)]),
    ...get(8), ...vload(0), ...get(13), ...VXOR, ...get(14), ...VMUL, ...get(6), ...SPLAT, ...VADD, ...set(12),
    ...get(8), ...vfmix(12, 15, 16), ...vstore(0),
    ...get(5), ...get(7), ...k32(2), SHL, ADD, ...set(5),
    ...get(8), ...k32(16), ADD, ...tee(8), ...get(9), LT_U, 0x0d, 0,
    END,
    ...get(6), ...k32(1), ADD, ...tee(6), ...get(2), LT_U, 0x0d, 0,
    END
  ])

  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [
      3,
      0x60, ...vec(new Array(4).fill(I32)), 0, // 0: fmixPairs, bandKeys
      0x60, ...vec(new Array(5).fill(I32)), 0, // 1: minima, shingles
      0x60, ...vec(new Array(5).fill(I32)), ...vec([I32]) // 2: words
    ]),
    ...section(3, [6, 0, 1, 2, 1, 0, 2]), // functions: 0 fmixPairs, 1 minima, 2 words, 3 shingles, 4 bandKeys, 5 words16
    ...section(5, [1, 0x00, 1]), // one memory, 1 page to start
    ...section(7, [6, ...str("minima"), 0x00, 1, ...str("words"), 0x00, 2, ...str("shingles"), 0x00, 3, ...str("bandKeys"), 0x00, 4, ...str("words16"), 0x00, 5, ...str("memory"), 0x02, 0]),
    ...section(10, [6, ...fmixPairs, ...minima, ...words, ...shingles, ...bandKeys, ...words16])
  ])
}

export interface SigningKernel {
  readonly minima: (sh: number, count: number, coef: number, pairs: number, out: number) => void
  readonly words: (text: number, len: number, raw: number, lo: number, hi: number) => number
  readonly shingles: (lo: number, hi: number, count: number, width: number, out: number) => void
  readonly bandKeys: (sig: number, bands: number, rows: number, out: number) => void
  readonly words16: (text: number, len: number, raw: number, lo: number, hi: number) => number
  readonly memory: WasmMemory
}

let compiled: object | undefined

/**
 * A kernel instance with its own memory (the module is compiled once per thread), or undefined where
 * WebAssembly SIMD is not available (signature.ts then signs in plain JS).
 */
export const signingKernel = (): SigningKernel | undefined => {
  if (typeof WebAssembly === "undefined") return undefined
  let instance: { readonly exports: Record<string, unknown> }
  try {
    compiled ??= new WebAssembly.Module(assemble())
    instance = new WebAssembly.Instance(compiled)
  } catch {
    return undefined // an engine without SIMD rejects the module
  }
  return instance.exports as unknown as SigningKernel
}
