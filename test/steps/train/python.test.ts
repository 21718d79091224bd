/**
 * Runs the training workers' Python unit tests (pytest, test/steps/train/python/) under vitest, in one
 * interpreter: NEFTune's noise, dataset reading, prompt templates, strategy configs, token shards, the checkpoint request.
 */
import * as path from "node:path"
import { expect, it } from "vitest"
import { here, python } from "./helpers.ts"

it("NEFTune noise, dataset reading and prompt templates (pytest)", async () => {
  const out = await python(["-m", "pytest", "-q", "-p", "no:cacheprovider", path.join(here, "python")])
  expect(out).toMatch(/\b20 passed/)
  expect(out).not.toMatch(/failed|error/)
}, 300_000)
