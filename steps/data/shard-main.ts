/**
 * Runs shard tasks in their own process, for an executor: `node shard-main.js <spec.json>...` runs the
 * given task specs in turn (with tsx's loader in a checkout); `--serve` reads spec paths from stdin, one
 * a line, and answers each with one line. Messages on stdout, one JSON object a line: `{"rows": n}`
 * while a task runs, then `{"done": id}` or `{"error": "...", "data": bool}` (data: the input is bad,
 * a retry cannot help). The exit code is 1 when a task failed. It stops when the process that started
 * it is gone, so an orphan never races the rerun that replaces it.
 */
import * as fs from "node:fs"
import * as readline from "node:readline"
import { DatasetError } from "./errors.ts"
import { executeTask, type TaskSpec } from "./fanout.ts"
import "./index.ts"

const parent = process.env.ANNEAL_SHARD_PARENT
if (parent !== undefined) {
  setInterval(() => {
    if (String(process.ppid) !== parent) process.exit(1)
  }, 1000).unref()
}

const say = (m: object): void => {
  process.stdout.write(JSON.stringify(m) + "\n")
}

const runOne = async (specFile: string): Promise<boolean> => {
  let last = 0
  try {
    const spec = JSON.parse(fs.readFileSync(specFile, "utf8")) as TaskSpec
    await executeTask(spec, (rows) => {
      const now = Date.now()
      if (now - last < 500) return
      last = now
      say({ rows })
    })
    say({ done: spec.id })
    return true
  } catch (e) {
    say({ error: e instanceof Error ? e.message : String(e), data: e instanceof DatasetError })
    return false
  }
}

const args = process.argv.slice(2)
if (args.length === 0) {
  process.stderr.write("usage: shard-main <task-spec.json>... | shard-main --serve\n")
  process.exit(2)
}
if (args[0] === "--serve") {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line.trim().length > 0) await runOne(line.trim())
  }
} else {
  for (const file of args) if (!(await runOne(file))) process.exitCode = 1
}
