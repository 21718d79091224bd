#!/usr/bin/env node
/**
 * `node scripts/with-temp-dir.js CMD ARG...`: runs CMD with TMPDIR set to a fresh directory and removes that
 * directory when CMD ends. The test suite makes hundreds of temporary stores, projects and specs (and Python's
 * tempfile and the warm workers follow TMPDIR too); a test that fails or times out cannot clean up its own,
 * so the suite's leftovers go with this one directory instead of piling up in /tmp.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const [cmd, ...args] = process.argv.slice(2)
if (cmd === undefined) {
  console.error("usage: node scripts/with-temp-dir.js CMD [ARG...]")
  process.exit(2)
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-tests-"))
const child = spawn(cmd, args, { stdio: "inherit", env: { ...process.env, TMPDIR: dir } })
const forward = (signal) => () => child.kill(signal)
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, forward(signal))
const remove = () => {
  try {
    // artifacts in test stores are read-only files in writable directories, which rm handles
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
  } catch (e) {
    console.error(`could not remove the tests' temporary directory ${dir}: ${e.message}`)
  }
}
child.on("error", (e) => {
  console.error(`cannot run ${cmd}: ${e.message}`)
  remove()
  process.exit(127)
})
child.on("exit", (code, signal) => {
  remove()
  process.exit(code ?? (signal === null ? 1 : 128 + (os.constants.signals[signal] ?? 0)))
})
