/**
 * Driving the CLI in a real terminal: a private tmux server (its own socket), one session of fixed
 * size, keys in with send-keys, screen out with capture-pane. tmux's own record of a pane's exit status
 * is sometimes empty, so the command runs under a small wrapper that writes its exit code to a file.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"

const wrapper = `
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
const [exitFile, ...args] = process.argv.slice(2)
const r = spawnSync(process.execPath, args, { stdio: "inherit" })
fs.writeFileSync(exitFile, String(r.status ?? "signal " + r.signal))
`

export interface Terminal {
  readonly screen: () => Promise<string>
  /** what scrolled out of the screen, then the screen */
  readonly history: () => Promise<string>
  readonly keys: (...keys: Array<string>) => Promise<void>
  /** the exit code once the command has exited (as text), else undefined */
  readonly exitCode: () => Promise<string | undefined>
  readonly until: <A>(what: string, f: () => Promise<A | undefined>, timeoutMs?: number) => Promise<A>
  readonly close: () => Promise<void>
}

/** Runs `node <args>` in a fresh 100x30 terminal, in `dir`, with colour off and outside CI. */
export const openTerminal = async (dir: string, args: ReadonlyArray<string>): Promise<Terminal> => {
  const socket = `anneal-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const tmux = (...a: Array<string>) => execa("tmux", ["-L", socket, ...a], { reject: false })
  const conf = path.join(dir, "tmux.conf")
  const exitFile = path.join(dir, `exit-code-${socket}`)
  fs.writeFileSync(conf, "set -g remain-on-exit on\n")
  fs.writeFileSync(path.join(dir, "record-exit.mjs"), wrapper)
  await tmux("-f", conf, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "-e", "CI=", "-e", "NO_COLOR=1", "-c", dir,
    "--", process.execPath, path.join(dir, "record-exit.mjs"), exitFile, ...args)
  const screen = async () => String((await tmux("capture-pane", "-p", "-t", "t")).stdout)
  const until = async <A>(what: string, f: () => Promise<A | undefined>, timeoutMs = 60_000): Promise<A> => {
    const start = Date.now()
    for (;;) {
      const v = await f()
      if (v !== undefined) return v
      if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}; screen:\n${await screen()}`)
      await new Promise((r) => setTimeout(r, 150))
    }
  }
  return {
    screen,
    history: async () => String((await tmux("capture-pane", "-p", "-S", "-", "-t", "t")).stdout),
    keys: async (...keys) => {
      await tmux("send-keys", "-t", "t", ...keys)
    },
    exitCode: async () => (fs.existsSync(exitFile) ? fs.readFileSync(exitFile, "utf8") : undefined),
    until,
    close: async () => {
      await tmux("kill-server")
    }
  }
}
