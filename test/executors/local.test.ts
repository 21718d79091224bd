import { makeLocalExecutor } from "../../engine/executors/local.ts"
import { executorContract } from "./contract.ts"

executorContract("local", { executor: makeLocalExecutor })
