/**
 * The executors anneal ships with. Each module registers itself (./registry.ts) when imported; local
 * first, so it leads the list `--executor` names in its error. A new backend is one more import here
 * (or an import in the recipe that uses it).
 */
import "./local.ts"
import "./slurm.ts"
import "./ray.ts"
