import { setupPythonEnv } from "../engine/python-setup.ts"
const args = process.argv.slice(2)
if (args[0] === "setup") {
  await setupPythonEnv(args.includes("--quiet") ? () => {} : (l) => console.error(l))
} else {
  console.error("anneal: the CLI is being built")
  process.exit(2)
}
