/**
 * Signing batches on worker threads, results in submission order. With one thread it signs inline:
 * a worker would only add start-up and copying. Signatures depend only on the config (seed included),
 * never on which thread computed them.
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
  private readonly inline: Signer | undefined
  private nextId = 0

  constructor(readonly config: MinHashConfig, readonly threads: number) {
    if (threads <= 1) {
      this.inline = new Signer(config)
      return
    }
    for (let t = 0; t < threads; t++) {
      const w = new Worker(new URL("./signature-worker.ts", import.meta.url), { workerData: config })
      w.on("message", (m: { id: number } & SignedBatch) => {
        const p = this.waiting.get(m.id)
        this.waiting.delete(m.id)
        p?.resolve({ sigs: m.sigs, signed: m.signed })
      })
      w.on("error", (e) => this.failAll(e))
      this.workers.push(w)
    }
  }

  sign(texts: ReadonlyArray<string>): Promise<SignedBatch> {
    if (this.inline !== undefined) {
      const k = this.config.numHashes
      const sigs = new Int32Array(texts.length * k)
      const signed = new Uint8Array(texts.length)
      for (let i = 0; i < texts.length; i++) signed[i] = this.inline.sign(texts[i]!, sigs, i * k) ? 1 : 0
      return Promise.resolve({ sigs, signed })
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.workers[id % this.workers.length]!.postMessage({ id, texts })
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
