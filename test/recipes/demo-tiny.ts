/** recipes/demo.ts's pipeline at the test suite's size (test/recipes/demo.test.ts): fewer steps, same wiring. */
import * as path from "node:path"
import { recipe } from "anneal"
import { demoPipeline } from "../../recipes/demo.ts"

export default recipe("demo-tiny", () => {
  demoPipeline(path.resolve(import.meta.dirname, "../../recipes/data/demo"), { pretrainSteps: 30, sftEpochs: 1 })
})
