#!/usr/bin/env node
// The `anneal` command: loads the TypeScript CLI through tsx's loader (recipes are TypeScript too).
const [major] = process.versions.node.split(".").map(Number)
if (major < 22) {
  console.error(`anneal needs Node >= 22 (this is ${process.version}); run it through npx or npm run, which use the project's Node 24`)
  process.exit(2)
}
// Heavy dependencies load through Node's own loader first: once in the module map, tsx's hooks only
// resolve them, which cuts start-up from ~2 s to ~0.4 s (measured on the 2-core dev machines).
await Promise.all([import("effect"), import("execa"), import("better-sqlite3")])
const { register } = await import("tsx/esm/api")
register()
await import("../cli/main.ts")
