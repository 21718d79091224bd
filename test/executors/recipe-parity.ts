/**
 * Runs a recipe end to end twice, locally and with a cluster executor, each into its own store, and
 * returns both runs' artifact hashes per step: a cluster executor must build byte-identical artifacts.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { EngineEvent } from "../../engine/events.ts"
import { projectRoot } from "../../engine/python.ts"
import { runRecipe } from "../../engine/run.ts"
import type { Executor } from "../../engine/spec.ts"

export interface RecipeRun {
  readonly exitCode: 0 | 1
  readonly outputs: Record<string, string>
  readonly events: ReadonlyArray<EngineEvent>
}

export const runWith = async (recipe: string, executor: Executor | undefined, jobs = 2): Promise<RecipeRun> => {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-parity-"))
  const events: Array<EngineEvent> = []
  try {
    // allowCpu: training steps ask for a GPU, and these machines have none (the cluster's fake GPUs are not CUDA)
    const summary = await runRecipe({ recipe, store, executor, jobs, allowCpu: true, reporter: { emit: (e) => events.push(e) }, fresh: true })
    return { exitCode: summary.exitCode, outputs: Object.fromEntries(summary.outputs), events }
  } finally {
    fs.rmSync(store, { recursive: true, force: true })
  }
}

export const failures = (run: RecipeRun): Array<string> =>
  run.events.flatMap((e) => (e.event === "step" && e.status === "failed" ? [`${e.step}: ${e.error}`] : []))

export const demoRecipe = path.join(projectRoot, "recipes", "curation.ts")
export const trainRecipe = path.join(projectRoot, "test", "executors", "fixtures", "train-recipe.ts")
/** real LoRA sft on a tiny Llama (needs ANNEAL_SFT_FIXTURES, see fixtures/sft-recipe.ts) */
export const sftRecipe = path.join(projectRoot, "test", "executors", "fixtures", "sft-recipe.ts")

/** Runs the demo and the Python training recipe locally and with `executor`; their hashes must agree. */
export const expectSameArtifacts = async (
  executor: () => Executor,
  expect: (a: unknown, b: unknown, what: string) => void,
  recipes: ReadonlyArray<string> = [trainRecipe, demoRecipe]
) => {
  // the recipes at once: a cluster run is mostly waiting for jobs to start
  const runs = await Promise.all(recipes.map(async (recipe) => {
    const local = await runWith(recipe, undefined)
    return { recipe, local, remote: await runWith(recipe, executor(), 4) }
  }))
  for (const { recipe, local, remote } of runs) {
    expect(failures(local), [], `local run of ${recipe}`)
    expect(failures(remote), [], `cluster run of ${recipe}`)
    expect(remote.outputs, local.outputs, `artifact hashes of ${recipe}`)
  }
}
