/**
 * Starts llama.cpp's OpenAI-compatible server on a GGUF file and waits until it answers: for the eval
 * step's GGUF path, the quantize tests, and test fixtures that need a real endpoint (generate).
 *
 * Readiness: GET /health answers 503 while the model loads and 200 once it serves; the child exiting
 * first (a bad file, a port taken) is an error carrying the end of its log. `stop()` sends SIGTERM,
 * then SIGKILL after a grace period, and resolves when the process is gone; call it in a finally.
 */
import * as net from "node:net"
import { execa, type ResultPromise } from "execa"
import { requireLlamaCpp } from "./llama-cpp.ts"

export interface LlamaServer {
  /** base URL without a trailing slash, e.g. http://127.0.0.1:41234; the OpenAI API is under /v1 */
  readonly url: string
  readonly port: number
  readonly pid: number | undefined
  /** everything the server printed so far (stdout and stderr) */
  readonly log: () => string
  readonly stop: () => Promise<void>
}

export interface LlamaServerOptions {
  readonly model: string
  /** context window in tokens (default 2048, or the model's if smaller is not wanted: pass it) */
  readonly ctxSize?: number
  /** CPU threads (default 2) */
  readonly threads?: number
  /** parallel request slots (default 1); each gets ctxSize / parallel tokens */
  readonly parallel?: number
  /** the name /v1/models reports and requests may use (default: the file name) */
  readonly alias?: string
  readonly seed?: number
  /** seconds to wait for /health to answer 200 (default 120) */
  readonly readyTimeoutS?: number
  /** further llama-server arguments */
  readonly extraArgs?: ReadonlyArray<string>
}

/** A port free right now on 127.0.0.1 (the kernel picks it). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** SIGTERM, SIGKILL after `graceMs`; resolves once `done` (the child's settled promise) has. */
const stopChild = async (child: ResultPromise, done: Promise<unknown>, graceMs = 5000): Promise<void> => {
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
  await done
  clearTimeout(timer)
}

export const startLlamaServer = async (options: LlamaServerOptions): Promise<LlamaServer> => {
  const { bin } = requireLlamaCpp("llama-server")
  const port = await freePort()
  const argv = [
    "--model", options.model, "--host", "127.0.0.1", "--port", String(port),
    "--ctx-size", String(options.ctxSize ?? 2048), "--threads", String(options.threads ?? 2),
    "--parallel", String(options.parallel ?? 1), "--seed", String(options.seed ?? 0), "--no-webui",
    ...(options.alias !== undefined ? ["--alias", options.alias] : []),
    ...(options.extraArgs ?? [])
  ]
  const child = execa(bin["llama-server"], argv, { reject: false, all: true, buffer: false, stdin: "ignore" })
  let output = ""
  child.all?.on("data", (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-200_000)
  })
  let exited = false
  const done = child.then(() => {
    exited = true
  })
  const url = `http://127.0.0.1:${port}`
  const server: LlamaServer = { url, port, pid: child.pid, log: () => output, stop: () => (exited ? Promise.resolve() : stopChild(child, done)) }
  const deadline = Date.now() + (options.readyTimeoutS ?? 120) * 1000
  try {
    for (;;) {
      if (exited) throw new Error(`llama-server exited before it was ready (model ${options.model}):\n${output.split("\n").slice(-15).join("\n")}`)
      try {
        const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })
        if (r.status === 200) return server
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`llama-server did not become ready within ${options.readyTimeoutS ?? 120} s (model ${options.model}):\n${output.split("\n").slice(-15).join("\n")}`)
      }
      await sleep(200)
    }
  } catch (e) {
    if (!exited) await stopChild(child, done)
    throw e
  }
}
