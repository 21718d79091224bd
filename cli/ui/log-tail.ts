/**
 * The last lines of a step's log file, read from its end so a multi-gigabyte training log costs the
 * same as a small one. Errors (a log not written yet) give an empty tail: the view must never throw.
 */
import * as fs from "node:fs"

const chunk = 64 * 1024

export const readLogTail = (file: string, lines: number): Array<string> => {
  let fd: number | undefined
  try {
    fd = fs.openSync(file, "r")
    const size = fs.fstatSync(fd).size
    const start = Math.max(0, size - chunk)
    const buf = Buffer.alloc(size - start)
    fs.readSync(fd, buf, 0, buf.length, start)
    const all = buf.toString("utf8").split(/\r?\n/)
    // the first line of a cut chunk is partial; the last is empty after a trailing newline
    if (start > 0) all.shift()
    if (all[all.length - 1] === "") all.pop()
    return all.slice(-lines)
  } catch {
    return []
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
