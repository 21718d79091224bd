/**
 * Signing batches on `threads` threads: the calling thread plus threads - 1 workers. A batch goes to a
 * worker with fewer than two batches queued; when all are busy the caller signs it inline, so the
 * thread that also reads and parses the input never sits idle and the machine is not oversubscribed.
 * Signatures depend only on the config (seed included), never on which thread computed them.
 */
import { Worker } from "node:worker_threads"
import { Signer, type MinHashConfig } from "./signature.ts"

export interface SignedBatch {
  readonly sigs: Int32Array
  readonly signed: Uint8Array
}

export class SignaturePool {
  private readonly workers: Array<Worker> = []
  private readonly waiting = new Map<number, { resolve: (b: SignedBatch) => void; reject: (e: unknown) => void }>()
  private readonly inline: Signer
  private readonly queued: Array<number> = []
  private nextId = 0

  constructor(readonly config: MinHashConfig, readonly threads: number) {
    this.inline = new Signer(config)
    for (let t = 0; t < threads - 1; t++) {
      // signature-worker.ts in the sources, .js once built (dist/)
      const w = new Worker(new URL(`./signature-worker${import.meta.url.slice(import.meta.url.lastIndexOf("."))}`, import.meta.url), { workerData: config })
      this.queued.push(0)
      w.on("message", (m: { id: number } & SignedBatch) => {
        this.queued[t]!--
        const p = this.waiting.get(m.id)
        this.waiting.delete(m.id)
        p?.resolve({ sigs: m.sigs, signed: m.signed })
      })
      w.on("error", (e) => this.failAll(e))
      this.workers.push(w)
    }
  }

  sign(texts: ReadonlyArray<string>): Promise<SignedBatch> {
    let t = 0
    for (let i = 1; i < this.queued.length; i++) if (this.queued[i]! < this.queued[t]!) t = i
    if (this.workers.length === 0 || this.queued[t]! >= 2) {
      const k = this.config.numHashes
      const sigs = new Int32Array(texts.length * k)
      const signed = new Uint8Array(texts.length)
      for (let i = 0; i < texts.length; i++) signed[i] = this.inline.sign(texts[i]!, sigs, i * k) ? 1 : 0
      return Promise.resolve({ sigs, signed })
    }
    const id = this.nextId++
    this.queued[t]!++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.workers[t]!.postMessage({ id, texts })
    })
  }

  private failAll(e: unknown): void {
    for (const p of this.waiting.values()) p.reject(e)
    this.waiting.clear()
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}
