/** `--help` texts. Kept beside the commands they describe; the README's CLI section mirrors them. */

export const usage = `anneal - run LLM training pipelines declared as TypeScript

Usage: anneal <command> [options]

Commands:
  init [dir]                   scaffold a recipe project (package.json, tsconfig, recipe.ts, sample data)
  run <recipe> [step ...]      run the recipe (or the named steps and what they need); only what changed runs
  plan <recipe> [step ...]     show each step as cached, stale (with reasons) or waiting
  show <step> [--recipe <r>]   key, params, trace, inputs, output, metrics and log of a step
  logs <step> [--recipe <r>]   print the log of a step's last run
  watch <recipe>               rerun what changed whenever the recipe, its modules or its sources change
  cache ls|gc|verify           list, garbage-collect or verify the store
  setup                        install the locked Python environment the ML steps use
  steps [kind]                 list the step kinds, or print one kind's params, inputs, output, resources
  exec-step <spec.json>        run one step spec (used by cluster executors)

Every command accepts --store DIR (default: .anneal/ in the recipe's project) and --help.
Exit codes: 0 success, 1 a step failed or was interrupted, 2 bad recipe, input or usage.
`

const texts: Record<string, string> = {
  init: `Usage: anneal init [dir] [--anneal <spec>]

Creates a recipe project in dir (default: the current directory; it must be new or empty): package.json
(an ES module depending on anneal, with typescript for type-checking), tsconfig.json, recipe.ts (the
built-in clean and dedup steps and a custom step), sample data in data/, .gitignore (the store,
node_modules) and a README. Then: npm install && npx anneal run recipe.ts

Options:
  --anneal <spec>    the anneal dependency to write into package.json (default: this anneal: the tarball,
                     path or git URL it was installed from, else ^<its version>)
`,
  run: `Usage: anneal run <recipe> [step ...] [options]

Runs the recipe's steps whose inputs, params or implementation changed; everything else comes from the
store. With step ids, runs only those steps and what they need.

Options:
  --force <step>     rerun this step even if cached (repeatable); dependents rerun only if its output changes
  --verify           rehash every artifact before restoring or reading it (default: check sizes and stats)
  --store <dir>      the store (default: .anneal/ in the recipe's project)
  --jobs, -j <n>     CPU slots for concurrent steps (default: number of cores)
  --gpus <list>      GPU ids to use, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES, else nvidia-smi)
  --allow-cpu        run steps that want GPUs on CPU when there are not enough
  --keep-going, -k   after a failure, finish the branches that do not depend on it
  --executor <name>  local (default), slurm or ray (settings in anneal.config.json)
  --remote <url>     s3://bucket/prefix: restore what it holds, upload what runs (or "remote" in
                     anneal.config.json; none turns that off; docs/remote-store.md)
  --json             one JSON event per line on stdout (the stable machine interface)
`,
  plan: `Usage: anneal plan <recipe> [step ...] [--json] [--format text|dot|mermaid] [--store <dir>] [--force <step>]
                   [--executor <name>] [--remote <url>]

Prints each step with its status: cached, stale (with the reasons, as a diff against its last successful
run) or waiting (it depends on a stale step), and with a cluster executor where each would run. Runs nothing.
--format dot or mermaid prints the DAG instead (Graphviz: anneal plan r.ts --format dot | dot -Tsvg > plan.svg;
Mermaid: paste into a Markdown file), each step a node coloured by its status.
`,
  show: `Usage: anneal show <step> [--recipe <recipe>] [--json] [--store <dir>]

Prints a step's key, params, trace, inputs, output artifact (hash and path), metrics, duration and log path.
Without --recipe, the step is found in the store (--store, else the current project's): exactly one recipe
must have run a step with that id. Never creates a store.
`,
  logs: `Usage: anneal logs <step> [--recipe <recipe>] [--store <dir>]

Prints the log file of the step's most recent run (without --recipe: found in the store, as for show).
`,
  watch: `Usage: anneal watch <recipe> [--json] [--store <dir>] [run options]

Runs the recipe, then watches the recipe module, the local modules it imports and its source files; on a
change it reruns only what became stale. Ctrl-C exits.
`,
  cache: `Usage: anneal cache ls|gc|verify [--store <dir>] [--recipe <recipe>] [--json]

  ls                    list artifacts: hash, kind, size, last used, which steps reference them; and
                        checkpoints (resume/<key>): size, last written, building / finished / idle
  gc [--max-size SIZE]  delete artifacts no recipe's latest state references and no live run uses; with
                        --max-size (e.g. 20G), keep the most recently used unreferenced ones up to that
                        total. Checkpoints go when their key finished or after --checkpoint-days (default 7)
                        without a write; generate's request cache entries after --request-days (default
                        30) unused, none while a generate step runs. --dry-run lists what would go and
                        deletes nothing.
  verify [--repair]     rehash every artifact, check sidecar .json files and the database's references;
                        exit 1 on a problem. --repair quarantines bad artifacts (the next run rebuilds
                        them), rewrites bad sidecars, drops dangling references; exit 0 once all repaired
  --remote <url>        gc and verify also act on the remote store (s3://bucket/prefix, or the config's
                        "remote"): verify checks every manifest's blobs and index entry (--repair deletes
                        the bad ones); gc deletes what no key names and no live run pins, and with
                        --remote-max-age-days N also keys older than N days this store does not use
`,
  setup: `Usage: anneal setup [--with llama-cpp] [--force] [--quiet]

Builds the Python environment from python/requirements.lock into ~/.cache/anneal/python-<lock hash>
(set ANNEAL_CACHE_DIR to move it). Idempotent; --force rebuilds.

  --with llama-cpp   also build llama.cpp (converter, llama-quantize, llama-server, llama-perplexity)
                     into ~/.cache/anneal/llama-cpp-<version>, which quantize (GGUF) and eval of GGUF
                     files need; a one-time build (20-60 minutes on 2 cores)
`,
  steps: `Usage: anneal steps [kind ...] [--markdown] [--recipe <recipe>]

Without a kind, lists the step kinds with a line each. With kinds, prints each one's params (type,
default, doc, and what each preset sets), inputs, output and resources, read from the step definitions.

Options:
  --markdown         print the reference as Markdown (docs/steps.md is this, for every built-in kind)
  --recipe <recipe>  also know the custom step kinds the recipe defines
`,
  "exec-step": `Usage: anneal exec-step <spec.json>

Runs one step spec in this process (TS steps) or as a child (command steps), printing the worker
protocol's JSON lines on stdout. Exit 0 means the spec's output directory holds the complete artifact.
`
}

export const helpFor = (command: string): string => texts[command] ?? usage
