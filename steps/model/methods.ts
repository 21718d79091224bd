/**
 * The merge methods, one output tensor at a time, computed in float32 with mergekit's order of
 * operations (mergekit/merge_methods/linear.py, slerp.py, generalized_task_arithmetic.py, sparsify.py)
 * so that float32 results agree with it bit for bit where the operations are elementwise.
 * Each method streams chunks (tensor-stream.ts); whole-tensor quantities (slerp's norms and dot, the
 * TIES top-k threshold, DARE's L1 norms) come from extra passes over the chunks.
 */
import type { ChunkedInputs, Encoder, Sink } from "./tensor-stream.ts"
import type { KeepMask } from "./rng.ts"

export const methodNames = ["linear", "slerp", "task_arithmetic", "ties", "dare_ties", "dare_linear"] as const
export type MethodName = (typeof methodNames)[number]

interface MethodInfo {
  /** does the method need a base model */
  readonly base: "required" | "ignored"
  /** how many inputs, base included */
  readonly minInputs: number
  readonly maxInputs?: number
  /** parameters per input (linear: every input; task arithmetic family: every non-base input) */
  readonly perInput: ReadonlyArray<string>
  readonly shared: ReadonlyArray<string>
  readonly sparsify?: "magnitude" | "random"
  readonly consensus: boolean
  readonly normalize: boolean
  readonly rescale: boolean
}

export const methodInfo: Readonly<Record<MethodName, MethodInfo>> = {
  linear: { base: "ignored", minInputs: 1, perInput: ["weight"], shared: ["normalize"], consensus: false, normalize: true, rescale: false },
  slerp: { base: "required", minInputs: 2, maxInputs: 2, perInput: [], shared: ["t"], consensus: false, normalize: false, rescale: false },
  task_arithmetic: { base: "required", minInputs: 1, perInput: ["weight"], shared: ["normalize", "lambda"], consensus: false, normalize: false, rescale: false },
  ties: { base: "required", minInputs: 1, perInput: ["weight", "density"], shared: ["normalize", "lambda", "rescale"], sparsify: "magnitude", consensus: true, normalize: true, rescale: false },
  dare_ties: { base: "required", minInputs: 1, perInput: ["weight", "density"], shared: ["normalize", "lambda", "rescale"], sparsify: "random", consensus: true, normalize: false, rescale: true },
  dare_linear: { base: "required", minInputs: 1, perInput: ["weight", "density"], shared: ["normalize", "lambda", "rescale"], sparsify: "random", consensus: false, normalize: false, rescale: true }
}

export interface TensorJob {
  /** output tensor name, for errors and drop masks */
  readonly name: string
  readonly inputs: ChunkedInputs
  readonly baseIndex: number | undefined
  /** per input (undefined for the base in the task arithmetic family) */
  readonly weight: ReadonlyArray<number | undefined>
  readonly density: ReadonlyArray<number | undefined>
  readonly t: number | undefined
  readonly normalize: boolean
  readonly lambda: number
  readonly rescale: boolean
  readonly out: Encoder
  readonly sink: Sink
  /** a fresh drop-mask stream for input i (same stream on every call) */
  readonly keepMask: (input: number, density: number) => KeepMask
}

const f = Math.fround

export const mergeTensor = (method: MethodName, job: TensorJob): Promise<void> => {
  switch (method) {
    case "linear":
      return linear(job)
    case "slerp":
      return slerp(job)
    default:
      return taskArithmetic(methodInfo[method], job)
  }
}

// ---------------------------------------------------------------------------------------------

const linear = async (job: TensorJob): Promise<void> => {
  const { inputs } = job
  const n = inputs.refs.length
  const w = job.weight.map((x) => f(x!))
  let denom = 0
  for (const x of w) denom = f(denom + x)
  const acc = new Float32Array(Math.min(inputs.numel, inputs.chunkSize))
  for (let c = 0; c < inputs.chunks; c++) {
    const { count } = inputs.range(c)
    const out = acc.subarray(0, count)
    out.fill(0)
    for (let j = 0; j < n; j++) {
      const v = await inputs.load(j, c)
      const wj = w[j]!
      // torch's addcmul_ is fused on CPU: one rounding of v*w + acc, as this double expression gives
      for (let i = 0; i < count; i++) out[i] = out[i]! + v[i]! * wj
    }
    if (job.normalize) for (let i = 0; i < count; i++) out[i] = out[i]! / denom
    await job.sink(job.out.encode(out))
  }
}

// ---------------------------------------------------------------------------------------------

const slerp = async (job: TensorJob): Promise<void> => {
  const { inputs } = job
  const b = job.baseIndex!
  const o = 1 - b
  const t = f(job.t!)
  // pass 1: norms, pass 2: dot of the normalized tensors (accumulated in float64)
  let na = 0
  let nb = 0
  for (let c = 0; c < inputs.chunks; c++) {
    const x = await inputs.load(b, c)
    const y = await inputs.load(o, c)
    for (let i = 0; i < x.length; i++) {
      na += x[i]! * x[i]!
      nb += y[i]! * y[i]!
    }
  }
  na = Math.sqrt(na)
  nb = Math.sqrt(nb)
  if (!(na > 1e-8)) na = 1
  if (!(nb > 1e-8)) nb = 1
  let dot = 0
  for (let c = 0; c < inputs.chunks; c++) {
    const x = await inputs.load(b, c)
    const y = await inputs.load(o, c)
    for (let i = 0; i < x.length; i++) dot += (x[i]! / na) * (y[i]! / nb)
  }
  dot = Math.min(1, Math.max(-1, dot))
  let ca: number
  let cb: number
  if (Math.abs(dot) > 0.9995) {
    // nearly colinear: sin(theta) ~ 0, so interpolate linearly as mergekit does
    ca = f(1 - t)
    cb = t
  } else {
    const theta = Math.acos(dot)
    const s = Math.sin(theta)
    ca = f(Math.sin((1 - t) * theta) / s)
    cb = f(Math.sin(t * theta) / s)
  }
  const acc = new Float32Array(Math.min(inputs.numel, inputs.chunkSize))
  for (let c = 0; c < inputs.chunks; c++) {
    const x = await inputs.load(b, c)
    const y = await inputs.load(o, c)
    const out = acc.subarray(0, x.length)
    for (let i = 0; i < x.length; i++) out[i] = f(ca * x[i]!) + f(cb * y[i]!)
    await job.sink(job.out.encode(out))
  }
}

// ---------------------------------------------------------------------------------------------

interface Sparsity {
  /** magnitude: |delta| bits above `threshold` are kept, plus the first `equal` equal to it */
  threshold?: number
  equal?: number
  /** random: keep-mask density */
  density?: number
  /** L1 rescale factor applied after masking (1 when off) */
  scale: number
}

const taskArithmetic = async (info: MethodInfo, job: TensorJob): Promise<void> => {
  const { inputs } = job
  const b = job.baseIndex!
  const others = inputs.refs.map((_, i) => i).filter((i) => i !== b)
  const size = Math.min(inputs.numel, inputs.chunkSize)
  const scratch = new Float32Array(size)
  const bits = new Uint32Array(scratch.buffer)
  const maskBuf = new Uint8Array(size)

  // delta of input j in chunk c, into `into`
  const delta = async (j: number, c: number, into: Float32Array): Promise<Float32Array> => {
    const base = await inputs.load(b, c)
    const m = await inputs.load(j, c)
    const d = into.subarray(0, base.length)
    for (let i = 0; i < base.length; i++) d[i] = m[i]! - base[i]!
    return d
  }

  // per input: what to keep, and the rescale factor
  const sparsity = new Map<number, Sparsity>()
  const selecting: Array<{ readonly j: number; readonly k: number }> = []
  const rescaled: Array<number> = []
  for (const j of others) {
    const density = job.density[j] ?? 1
    const sp: Sparsity = { scale: 1 }
    sparsity.set(j, sp)
    if (info.sparsify === undefined || density >= 1) continue
    if (info.sparsify === "magnitude") {
      if (density <= 0 || inputs.numel === 0) {
        sp.threshold = 0xffffffff
        sp.equal = 0
        continue
      }
      selecting.push({ j, k: Math.max(1, Math.trunc(density * inputs.numel)) })
    } else {
      sp.density = density
    }
    if (job.rescale) rescaled.push(j)
  }
  if (selecting.length > 0) {
    // every input's threshold in the same passes, so the base is read once per pass
    const scratches = selecting.map(() => new Float32Array(size))
    const views = scratches.map((x) => new Uint32Array(x.buffer))
    const found = await topK(inputs, selecting.map((s) => s.k), async (idx, c) => {
      await delta(selecting[idx]!.j, c, scratches[idx]!)
      return views[idx]!
    })
    found.forEach((r, idx) => Object.assign(sparsity.get(selecting[idx]!.j)!, r))
  }
  for (const j of rescaled) {
    const sp = sparsity.get(j)!
    let before = 0
    let after = 0
    const keep = sp.density !== undefined ? job.keepMask(j, sp.density) : undefined
    const eq = { seen: 0 }
    for (let c = 0; c < inputs.chunks; c++) {
      const d = await delta(j, c, scratch)
      const mask = maskBuf.subarray(0, d.length)
      fillMask(sp, keep, bits, mask, eq)
      for (let i = 0; i < d.length; i++) {
        const a = Math.abs(d[i]!)
        before += a
        if (mask[i]) after += a
      }
    }
    const fb = f(before)
    const fa = f(after)
    if (fb >= 1e-7 && fa >= 1e-7) sp.scale = f(fb / fa)
  }

  const w = job.weight.map((x) => (x === undefined ? 0 : f(x)))
  const lambda = f(job.lambda)
  let weightSum = 0
  for (const j of others) weightSum = f(weightSum + w[j]!)
  const deltas = others.map(() => new Float32Array(size))
  const masks = others.map(() => new Uint8Array(size))
  const keeps = others.map((j) => {
    const sp = sparsity.get(j)!
    return sp.density !== undefined ? job.keepMask(j, sp.density) : undefined
  })
  const equalSeen = others.map(() => ({ seen: 0 }))
  const out = new Float32Array(size)
  const mixedBuf = new Float32Array(size)
  const divisorBuf = new Float32Array(size)
  const sumBuf = new Float32Array(size)

  for (let c = 0; c < inputs.chunks; c++) {
    const { count } = inputs.range(c)
    for (let k = 0; k < others.length; k++) {
      const j = others[k]!
      const sp = sparsity.get(j)!
      const d = await delta(j, c, deltas[k]!)
      const bitsK = new Uint32Array(d.buffer, 0, count)
      const mask = masks[k]!.subarray(0, count)
      fillMask(sp, keeps[k], bitsK, mask, equalSeen[k]!)
      const wj = w[j]!
      const s = sp.scale
      if (s === 1) for (let i = 0; i < count; i++) d[i] = mask[i] ? d[i]! * wj : 0
      else for (let i = 0; i < count; i++) d[i] = mask[i] ? f(d[i]! * s) * wj : 0
    }
    const base = await inputs.load(b, c)
    const o = out.subarray(0, count)
    // one tight loop per input over typed arrays (stores into Float32Array round like float32 ops)
    const mixed = mixedBuf.subarray(0, count)
    const divisor = divisorBuf.subarray(0, count)
    mixed.fill(0)
    if (info.consensus) {
      const sum = sumBuf.subarray(0, count)
      sum.fill(0)
      for (let k = 0; k < deltas.length; k++) {
        const d = deltas[k]!
        for (let i = 0; i < count; i++) sum[i] = sum[i]! + d[i]!
      }
      divisor.fill(0)
      for (let k = 0; k < deltas.length; k++) {
        const d = deltas[k]!
        const wk = w[others[k]!]!
        for (let i = 0; i < count; i++) {
          const x = d[i]!
          // sign(x) == majority, where majority is +1 when the sum is >= 0; zero deltas never vote
          if ((x > 0 && sum[i]! >= 0) || (x < 0 && sum[i]! < 0)) {
            mixed[i] = mixed[i]! + x
            divisor[i] = divisor[i]! + wk
          }
        }
      }
      if (job.normalize) for (let i = 0; i < count; i++) mixed[i] = mixed[i]! / (divisor[i] === 0 ? 1 : divisor[i]!)
    } else {
      for (let k = 0; k < deltas.length; k++) {
        const d = deltas[k]!
        for (let i = 0; i < count; i++) mixed[i] = mixed[i]! + d[i]!
      }
      const div = Math.abs(weightSum) < 1e-8 ? 1 : weightSum
      if (job.normalize) for (let i = 0; i < count; i++) mixed[i] = mixed[i]! / div
    }
    if (lambda !== 1) for (let i = 0; i < count; i++) mixed[i] = mixed[i]! * lambda
    for (let i = 0; i < count; i++) o[i] = base[i]! + mixed[i]!
    await job.sink(job.out.encode(o))
  }
}

/** Fills the keep mask of one chunk for one input. */
const fillMask = (sp: Sparsity, keep: KeepMask | undefined, deltaBits: Uint32Array, mask: Uint8Array, eq: { seen: number }): void => {
  if (keep !== undefined) {
    keep(mask)
    return
  }
  if (sp.threshold === undefined) {
    mask.fill(1)
    return
  }
  const t = sp.threshold
  const need = sp.equal!
  for (let i = 0; i < mask.length; i++) {
    const a = deltaBits[i]! & 0x7fffffff
    if (a > t) mask[i] = 1
    else if (a === t && eq.seen < need) {
      mask[i] = 1
      eq.seen++
    } else mask[i] = 0
  }
}

/**
 * The k-th largest |delta| of each input without holding the tensors: |x| of a float32 orders like its
 * bits as an unsigned integer, so a radix select over the high then the low 16 bits, one histogram
 * pass each, gives the exact threshold and how many entries equal to it are kept.
 */
const topK = async (
  inputs: ChunkedInputs,
  ks: ReadonlyArray<number>,
  deltaBits: (input: number, chunk: number) => Promise<Uint32Array>
): Promise<Array<{ threshold: number; equal: number }>> => {
  const n = ks.length
  const hists = ks.map(() => new Uint32Array(65536))
  for (let c = 0; c < inputs.chunks; c++) {
    const { count } = inputs.range(c)
    for (let m = 0; m < n; m++) {
      const bits = await deltaBits(m, c)
      const hist = hists[m]!
      for (let i = 0; i < count; i++) hist[(bits[i]! & 0x7fffffff) >>> 16]!++
    }
  }
  const above = new Array<number>(n).fill(0)
  const his = ks.map((k, m) => {
    const hist = hists[m]!
    let hi = 65535
    for (; hi > 0; hi--) {
      if (above[m]! + hist[hi]! >= k) break
      above[m] = above[m]! + hist[hi]!
    }
    hist.fill(0)
    return hi
  })
  for (let c = 0; c < inputs.chunks; c++) {
    const { count } = inputs.range(c)
    for (let m = 0; m < n; m++) {
      const bits = await deltaBits(m, c)
      const hist = hists[m]!
      const hi = his[m]!
      for (let i = 0; i < count; i++) {
        const a = bits[i]! & 0x7fffffff
        if (a >>> 16 === hi) hist[a & 0xffff]!++
      }
    }
  }
  return ks.map((k, m) => {
    const hist = hists[m]!
    let lo = 65535
    for (; lo > 0; lo--) {
      if (above[m]! + hist[lo]! >= k) break
      above[m] = above[m]! + hist[lo]!
    }
    return { threshold: ((his[m]! << 16) | lo) >>> 0, equal: k - above[m]! }
  })
}
