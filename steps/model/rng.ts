/**
 * The seeded random stream behind DARE's drop masks: xoshiro128** seeded per (seed, tensor, model),
 * so a mask is reproducible chunk by chunk (a second pass regenerates it instead of storing it) and
 * does not depend on the order in which tensors are merged.
 */

const fnv1a = (s: string, h = 0x811c9dc5): number => {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

const splitmix32 = (a: number) => (): number => {
  a = (a + 0x9e3779b9) >>> 0
  let z = a
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
  return (z ^ (z >>> 16)) >>> 0
}

export class Xoshiro128 {
  private s0 = 0
  private s1 = 0
  private s2 = 0
  private s3 = 0

  constructor(seed: number) {
    const sm = splitmix32(seed >>> 0)
    this.s0 = sm()
    this.s1 = sm()
    this.s2 = sm()
    this.s3 = sm()
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1
  }

  /** uniform uint32 */
  next(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0
    const t = this.s1 << 9
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return r
  }
}

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k))

/** A fresh stream for one tensor of one model. */
export const maskStream = (seed: number, tensor: string, model: number): Xoshiro128 =>
  new Xoshiro128(fnv1a(`${tensor}#${model}`, fnv1a(String(seed))))

/** The keep mask source: fills `out[i]` with 1 (keep) or 0 (drop) for the next `out.length` elements. */
export type KeepMask = (out: Uint8Array) => void

/** Bernoulli(density) keep masks from the seeded stream. */
export const bernoulliMask = (seed: number, tensor: string, model: number, density: number): KeepMask => {
  const rng = maskStream(seed, tensor, model)
  // compare uint32 draws with a threshold instead of dividing: P(keep) = threshold / 2^32
  const threshold = Math.round(density * 2 ** 32)
  return (out) => {
    for (let i = 0; i < out.length; i++) out[i] = rng.next() < threshold ? 1 : 0
  }
}
