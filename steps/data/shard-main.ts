/**
 * Runs one shard task in its own process: `node shard-main.js <spec.json>` (with tsx's loader in a
 * checkout). Prints `{"rows": n}` lines as it goes and, on failure, one `{"error": "...", "data": bool}`
 * line (data: the input is bad, a retry cannot help) before exiting 1. It stops when the process that
 * started it is gone, so an orphan never races the rerun that replaces it.
 */
import * as fs from "node:fs"
import { DatasetError } from "./errors.ts"
import { executeTask, type TaskSpec } from "./fanout.ts"
import "./index.ts"

const parent = process.env.ANNEAL_SHARD_PARENT
if (parent !== undefined) {
  setInterval(() => {
    if (String(process.ppid) !== parent) process.exit(1)
  }, 1000).unref()
}

const specFile = process.argv[2]
if (specFile === undefined) {
  process.stderr.write("usage: shard-main <task-spec.json>\n")
  process.exit(2)
}
let last = 0
try {
  const spec = JSON.parse(fs.readFileSync(specFile, "utf8")) as TaskSpec
  await executeTask(spec, (rows) => {
    const now = Date.now()
    if (now - last < 500) return
    last = now
    process.stdout.write(JSON.stringify({ rows }) + "\n")
  })
} catch (e) {
  process.stdout.write(JSON.stringify({ error: e instanceof Error ? e.message : String(e), data: e instanceof DatasetError }) + "\n")
  process.exitCode = 1
}
