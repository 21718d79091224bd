/**
 * A driver process for the restart tests: builds an executor from a config, runs one spec with it,
 * and prints every event as a JSON line, then {"done": ...}. The test kills it with SIGKILL mid-step
 * (no finalizers run, as when a login node reboots) and starts another one.
 *
 *   node --import tsx test/executors/driver.ts CONFIG.json SPEC.json
 *   CONFIG.json: { "executor": "slurm" | "ray" | "local", ...the project config }
 */
import * as fs from "node:fs"
import { Effect, Exit } from "effect"
import { chooseExecutor, makeExecutor } from "../../engine/executor-config.ts"
import type { ProjectConfig } from "../../engine/executor-config.ts"
import type { StepSpec } from "../../engine/spec.ts"

const [configPath, specPath] = process.argv.slice(2)
const config = JSON.parse(fs.readFileSync(configPath!, "utf8")) as ProjectConfig
const spec = JSON.parse(fs.readFileSync(specPath!, "utf8")) as StepSpec
const executor = makeExecutor(chooseExecutor(undefined, config), config)
const exit = await Effect.runPromiseExit(executor.run(spec, (e) => process.stdout.write(JSON.stringify(e) + "\n")))
process.stdout.write(JSON.stringify({ done: true, ok: Exit.isSuccess(exit), detail: Exit.isSuccess(exit) ? exit.value : String(exit.cause) }) + "\n")
