#!/usr/bin/env node
// The `anneal` command: loads the TypeScript CLI through tsx's loader (recipes are TypeScript too).
import { register } from "tsx/esm/api"

const [major] = process.versions.node.split(".").map(Number)
if (major < 22) {
  console.error(`anneal needs Node >= 22 (this is ${process.version}); run it through npx or npm run, which use the project's Node 24`)
  process.exit(2)
}
register()
await import("../cli/main.ts")
