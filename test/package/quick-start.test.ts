/**
 * The README's quick start from a fresh clone: the setup command, exactly as the README's "Develop
 * anneal" section writes it, run in a `git clone` of this repository (its committed HEAD) in a temp dir,
 * as a user would type it. `.ci/run` must be those same two commands and nothing else a user would not
 * type. The test command itself is not run here (it would run this test again): `.ci/run` runs it, from
 * its own fresh clone.
 *
 * Cost: the clone reuses the machine's npm cache and the Python environment cached per lock file
 * (~/.cache/anneal/python-<hash>), so this is `npm install` from cache, the package build and the demo:
 * about 30-60 s on the 2-core machines.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { explain, repoRoot, sh, tempDir } from "./user-env.ts"

/** The README's two quick-start commands: the first ```sh block of its "Develop anneal" section. */
const readmeQuickStart = (): Array<string> => {
  const readme = fs.readFileSync(path.join(repoRoot, "README.md"), "utf8")
  const section = readme.indexOf("\n## Develop anneal")
  if (section === -1) throw new Error('README.md has no "## Develop anneal" section')
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(section))
  if (block === null) throw new Error('README.md: no ```sh block under "## Develop anneal"')
  return block[1]!.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
}

/** `a b && c d` -> [[a, b], [c, d]]; the quick start's commands are plain words joined by &&. */
const argvsOf = (line: string): Array<Array<string>> => {
  expect(line, "a quick-start command must be plain words joined by &&").toMatch(/^[\w./:= -]+( && [\w./:= -]+)*$/)
  return line.split(" && ").map((c) => c.trim().split(/\s+/))
}

describe("the README's quick start", () => {
  let tmp = ""
  afterAll(() => {
    if (tmp !== "" && process.env.ANNEAL_KEEP_TEST_DIRS !== "1") fs.rmSync(tmp, { recursive: true, force: true })
  })

  it("is two commands, and .ci/run is exactly them", () => {
    const commands = readmeQuickStart()
    expect(commands).toEqual(["npm install && npm run demo", "npm test"])
    const ci = fs.readFileSync(path.join(repoRoot, ".ci", "run"), "utf8")
    const lines = ci.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
    expect(lines).toEqual(["set -euo pipefail", 'cd "$(dirname "$0")/.."', ...commands])
  })

  it("its setup command passes in a fresh clone, and a second demo run reruns nothing", async () => {
    tmp = tempDir("anneal-quick-start-")
    const clone = path.join(tmp, "anneal")
    const cloned = await sh(["git", "clone", "--quiet", repoRoot, clone], tmp)
    expect(cloned.exitCode, explain(["git", "clone"], cloned)).toBe(0)

    const timings: Array<string> = []
    for (const argv of argvsOf(readmeQuickStart()[0]!)) {
      const r = await sh(argv, clone)
      timings.push(`${argv.join(" ")} ${r.seconds.toFixed(1)}s`)
      expect(r.exitCode, explain(argv, r)).toBe(0)
      if (argv.join(" ") === "npm run demo") expect(r.stdout).toMatch(/ran [1-9]\d* · cached 0 · failed 0/)
    }
    const again = await sh(["npm", "run", "demo"], clone)
    expect(again.exitCode, explain(["npm", "run", "demo"], again)).toBe(0)
    expect(again.stdout).toMatch(/ran 0 · cached [1-9]\d* · failed 0/)
    process.stderr.write(`quick start timings: ${timings.join(", ")}\n`)
    // the demo trains and evaluates four models (2-4 minutes on a loaded 2-core machine)
  }, 900_000)
})
