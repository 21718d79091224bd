/** Runs the NEFTune unit tests (pytest, test/steps/train/python/test_neftune.py) under vitest. */
import * as path from "node:path"
import { expect, it } from "vitest"
import { here, python } from "./helpers.ts"

it("NEFTune noise is uniform in ±alpha/sqrt(L·d) in training and absent in eval mode (pytest)", async () => {
  const out = await python(["-m", "pytest", "-q", "-p", "no:cacheprovider", path.join(here, "python", "test_neftune.py")])
  expect(out).toMatch(/3 passed/)
}, 300_000)
