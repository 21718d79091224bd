/**
 * `anneal init` from this checkout: what it writes, what it refuses, and which anneal the new project
 * depends on. (test/package/ runs the same command from the packed tarball, then installs and runs the
 * project.)
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { annealDependencySpec } from "../../cli/init.ts"
import { cli } from "../helpers/project.ts"
import { projectRoot } from "../../engine/python.ts"

const dirs: Array<string> = []
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-init-"))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

describe("anneal init", () => {
  it("writes a project that depends on this checkout, and names the next commands", async () => {
    const dir = path.join(tmp(), "my-recipes")
    const r = await cli(["init", dir])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain("npm install")
    expect(r.stdout).toContain("npx anneal run recipe.ts")
    const files = fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()
    expect(files).toEqual([".gitignore", "README.md", "data", "data/instructions.jsonl", "package.json", "recipe.ts", "tsconfig.json"])
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as {
      name: string
      type: string
      dependencies: Record<string, string>
      devDependencies: Record<string, string>
    }
    expect(pkg).toMatchObject({ name: "my-recipes", type: "module", dependencies: { anneal: `file:${projectRoot}` } })
    expect(Object.keys(pkg.devDependencies).sort()).toEqual(["@types/node", "typescript"])
    expect(fs.readFileSync(path.join(dir, ".gitignore"), "utf8").split("\n")).toContain(".anneal/")
    expect(fs.readFileSync(path.join(dir, "README.md"), "utf8")).toMatch(/^# my-recipes\n/)
  })

  it("--anneal writes the given dependency spec", async () => {
    const dir = tmp()
    const r = await cli(["init", dir, "--anneal", "github:example/anneal#v0.1.0"])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).dependencies).toEqual({ anneal: "github:example/anneal#v0.1.0" })
  })

  it("refuses a non-empty directory, a file, and two directories, with one line and exit 2, writing nothing", async () => {
    const dir = tmp()
    fs.writeFileSync(path.join(dir, "notes.txt"), "mine\n")
    const full = await cli(["init", dir])
    expect(full.exitCode).toBe(2)
    expect(full.stderr).toBe(`anneal: init: ${dir} is not empty; give a new or empty directory (anneal init my-recipes)`)
    expect(fs.readdirSync(dir)).toEqual(["notes.txt"])

    const file = await cli(["init", path.join(dir, "notes.txt")])
    expect(file.exitCode).toBe(2)
    expect(file.stderr).toBe(`anneal: init: ${path.join(dir, "notes.txt")} exists and is not a directory`)

    const two = await cli(["init", "a", "b"])
    expect(two.exitCode).toBe(2)
    expect(two.stderr).toBe("anneal: init: give one directory, got 2")

    const empty = await cli(["init", dir, "--anneal", ""])
    expect(empty.exitCode).toBe(2)
    expect(empty.stderr).toMatch(/^anneal: init: --anneal takes an npm dependency spec, e.g. [^\n]*$/)
  })
})

describe("the anneal dependency a new project gets", () => {
  /** A project that installed anneal with `spec`, as npm lays it out. */
  const installedWith = (spec: string | undefined): string => {
    const project = tmp()
    fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "x", dependencies: spec === undefined ? {} : { anneal: spec } }))
    const root = path.join(project, "node_modules", "anneal")
    fs.mkdirSync(root, { recursive: true })
    return root
  }

  it("a relative tarball or path (npx writes one relative to its own cache dir) becomes absolute", () => {
    const root = installedWith("file:../../tmp/anneal-0.1.0.tgz")
    const project = path.dirname(path.dirname(root))
    expect(annealDependencySpec(root, "0.1.0")).toBe(`file:${path.resolve(project, "../../tmp/anneal-0.1.0.tgz")}`)
    expect(annealDependencySpec(installedWith("../anneal"), "0.1.0")).toMatch(/^file:\/.*\/anneal$/)
  })

  it("a git URL stays as it is; a registry range, a tag or nothing becomes ^version; a checkout is its path", () => {
    expect(annealDependencySpec(installedWith("github:example/anneal"), "0.1.0")).toBe("github:example/anneal")
    expect(annealDependencySpec(installedWith("git+https://example.com/anneal.git#main"), "0.1.0")).toBe("git+https://example.com/anneal.git#main")
    expect(annealDependencySpec(installedWith("https://example.com/anneal-0.1.0.tgz"), "0.1.0")).toBe("https://example.com/anneal-0.1.0.tgz")
    expect(annealDependencySpec(installedWith("~0.1.0"), "0.1.2")).toBe("^0.1.2")
    expect(annealDependencySpec(installedWith("latest"), "0.1.2")).toBe("^0.1.2")
    expect(annealDependencySpec(installedWith(undefined), "0.1.2")).toBe("^0.1.2")
    expect(annealDependencySpec("/src/anneal", "0.1.2")).toBe("file:/src/anneal")
  })
})
