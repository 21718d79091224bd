/**
 * A worker thread that signs batches of texts. Node runs this file with its built-in type stripping,
 * so it and what it imports use only erasable TypeScript.
 */
import { parentPort, workerData } from "node:worker_threads"
import { Signer, type MinHashConfig } from "./signature.ts"

const config = workerData as MinHashConfig
const signer = new Signer(config)

parentPort!.on("message", (msg: { readonly id: number; readonly texts: ReadonlyArray<string> }) => {
  const k = config.numHashes
  const sigs = new Int32Array(msg.texts.length * k)
  const signed = new Uint8Array(msg.texts.length)
  for (let i = 0; i < msg.texts.length; i++) signed[i] = signer.sign(msg.texts[i]!, sigs, i * k) ? 1 : 0
  parentPort!.postMessage({ id: msg.id, sigs, signed }, [sigs.buffer, signed.buffer])
})
