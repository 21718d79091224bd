/**
 * The executors anneal ships with. Each module registers itself (./registry.ts) when imported; local
 * first, so it leads the list `--executor` names in its error. A new backend is one more import here
 * (or an import in the recipe that uses it). The cluster backends' modules here are their light
 * registrations; their executors (slurm.ts, ray.ts) load only for a run that uses them.
 */
import "./local.ts"
import "./slurm-config.ts"
import "./ray-config.ts"
