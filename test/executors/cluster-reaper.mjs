// A watchdog for a test cluster: `node cluster-reaper.mjs PID MARK...` waits until process PID (the
// test process) is gone, then ends every process whose environment holds one of the MARKs
// ("NAME=value") and their descendants: SIGTERM, then SIGKILL. It covers the one case a test file's
// afterAll and exit hook cannot: the test process itself killed by a signal. The harness starts it
// detached, and kills it after a normal stop. Plain JavaScript, Node's built-ins only.
import * as fs from "node:fs"

const [parent, ...marks] = process.argv.slice(2)
const parentPid = Number(parent)

const alive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return e.code === "EPERM"
  }
}

const owned = () => {
  const procs = []
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] === "Z") continue
      let env = []
      try {
        env = fs.readFileSync(`/proc/${name}/environ`, "utf8").split("\0")
      } catch {
        // not readable
      }
      procs.push({ pid: Number(name), ppid: Number(fields[1]), marked: env.some((e) => marks.includes(e)) })
    } catch {
      // exited while listing
    }
  }
  const mine = new Set(procs.filter((p) => p.marked).map((p) => p.pid))
  for (let grew = true; grew;) {
    grew = false
    for (const p of procs) {
      if (!mine.has(p.pid) && mine.has(p.ppid)) {
        mine.add(p.pid)
        grew = true
      }
    }
  }
  return [...mine]
}

const signal = (pids, sig) => {
  for (const pid of pids) {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

const reap = () => {
  signal(owned(), "SIGTERM")
  const deadline = Date.now() + 8000
  const check = () => {
    const left = owned()
    if (left.length === 0) process.exit(0)
    if (Date.now() > deadline) {
      signal(left, "SIGKILL")
      process.exit(0)
    }
    setTimeout(check, 250)
  }
  setTimeout(check, 250)
}

const watch = () => (alive(parentPid) ? setTimeout(watch, 1000) : reap())
watch()
