/**
 * The commands behind `anneal <command>`. Each parses its own options (node:util parseArgs) and returns
 * an exit code; bad input is thrown as a tagged error that cli/main.ts turns into exit 2.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { ParseArgsConfig } from "node:util"
// Built-in step kinds register through the package's entry, as they do for a recipe that imports "anneal".
import "../index.ts"
import { UsageError } from "../engine/errors.ts"
import { hashSourcesOffThread, openProject, planSteps, projectRootOf, selectSteps, unknownStep } from "../engine/plan.ts"
import { Store } from "../cache/store.ts"
import { presenceScanWanted } from "../cache/presence-scan.ts"
import { executorChoice } from "./executor-choice.ts"
import { describePlacement, loadProjectConfig } from "../engine/executor-config.ts"
import type { ProjectConfig } from "../engine/executor-config.ts"
import type { RemoteConfig } from "../cache/remote/url.ts"
import { requestOf } from "../engine/scheduler.ts"
import { describeDistribution, distributionPlan } from "../steps/train/torchrun.ts"
import { graphFormats, renderPlan, renderPlanGraph } from "./render/plan.ts"
import type { GraphFormat } from "./render/plan.ts"
import { colorEnabled } from "./render/paint.ts"

export interface Command {
  readonly options: ParseArgsConfig["options"]
  readonly run: (values: Record<string, unknown>, positionals: ReadonlyArray<string>, argv: ReadonlyArray<string>) => Promise<number>
}

const storeOption = { store: { type: "string" } } as const

// What only some commands use (the reporters, the cache and show commands, exec-step) loads when that
// command runs, so `plan` does not pay for it at start-up.

const needRecipe = (positionals: ReadonlyArray<string>, command: string): string => {
  const r = positionals[0]
  if (r === undefined) throw new UsageError({ message: `${command}: give a recipe file, e.g. anneal ${command} recipes/demo.ts` })
  return r
}

const intOption = (name: string, v: unknown): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError({ message: `--${name} must be a positive integer, got "${String(v)}"` })
  return n
}

const gpuList = (v: unknown): ReadonlyArray<number> | undefined => {
  if (v === undefined) return undefined
  const s = String(v).trim()
  if (s === "" || s === "none") return []
  const ids = s.split(",").map((x) => x.trim())
  if (!ids.every((x) => /^\d+$/.test(x))) throw new UsageError({ message: `--gpus takes GPU ids like 0,1 (or "none"), got "${s}"` })
  return ids.map(Number)
}

/** The store a cache command works on: --store, else the project of --recipe, else the cwd's project. */
export const storeRootFor = (values: Record<string, unknown>): string => {
  if (typeof values.store === "string") return path.resolve(values.store)
  const anchor = typeof values.recipe === "string" ? values.recipe : path.join(process.cwd(), "package.json")
  return path.join(projectRootOf(anchor), ".anneal")
}

/** `--remote s3://...` (or `none`), else anneal.config.json's "remote"; the S3 code loads only when there is one. */
const remoteFor = async (v: Record<string, unknown>, config: ProjectConfig): Promise<RemoteConfig | undefined> => {
  const configured = (config as { remote?: RemoteConfig }).remote
  if (v.remote === undefined && configured === undefined) return undefined
  return (await import("../cache/remote/cli.ts")).chooseRemote(v.remote, { remote: configured })
}

const run: Command = {
  options: {
    ...storeOption,
    force: { type: "string", multiple: true },
    verify: { type: "boolean" },
    jobs: { type: "string", short: "j" },
    gpus: { type: "string" },
    "allow-cpu": { type: "boolean" },
    "keep-going": { type: "boolean", short: "k" },
    executor: { type: "string" },
    remote: { type: "string" },
    json: { type: "boolean" }
  },
  run: async (v, positionals, argv) => {
    const recipe = needRecipe(positionals, "run")
    const controller = new AbortController()
    // the first Ctrl-C (a signal, or a keypress in the live view) interrupts cleanly; a second one
    // stops waiting for children to exit
    const onSignal = () => {
      if (controller.signal.aborted) process.exit(130)
      controller.abort()
    }
    const reporter = v.json === true
      ? (await import("./reporters/json.ts")).makeJsonReporter()
      : await (await import("./reporters/pick.ts")).pickReporter({ onInterrupt: onSignal })
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    try {
      const store = typeof v.store === "string" ? v.store : undefined
      const where = executorChoice(typeof v.executor === "string" ? v.executor : undefined, recipe, store)
      const { runRecipe } = await import("../engine/run.ts")
      const summary = await runRecipe({
        recipe,
        store,
        targets: positionals.slice(1),
        force: (v.force as Array<string> | undefined) ?? [],
        verify: v.verify === true,
        jobs: intOption("jobs", v.jobs) ?? where.capacity?.cpus,
        gpus: gpuList(v.gpus) ?? where.capacity?.gpus,
        memoryGb: where.capacity?.memoryGb,
        allowCpu: v["allow-cpu"] === true,
        keepGoing: v["keep-going"] === true,
        reporter,
        signal: controller.signal,
        executor: where.executor,
        remote: await remoteFor(v, where.config),
        argv
      })
      return summary.exitCode
    } finally {
      await reporter.close?.()
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
    }
  }
}

/** `--format dot|mermaid` (or `text`, the default), checked before the recipe loads. */
const graphFormatOf = (v: unknown): GraphFormat | undefined => {
  if (v === undefined || v === "text") return undefined
  if (graphFormats.includes(v as GraphFormat)) return v as GraphFormat
  throw new UsageError({ message: `plan: --format must be text, dot or mermaid, got "${String(v)}"` })
}

const plan: Command = {
  options: {
    ...storeOption,
    json: { type: "boolean" },
    format: { type: "string" },
    force: { type: "string", multiple: true },
    executor: { type: "string" },
    remote: { type: "string" }
  },
  run: async (v, positionals) => {
    const recipe = needRecipe(positionals, "plan")
    const format = graphFormatOf(v.format)
    const project = await openProject(recipe, { store: typeof v.store === "string" ? v.store : undefined, scan: presenceScanWanted() })
    try {
      const steps = selectSteps(project.graph, positionals.slice(1))
      const force = (v.force as Array<string> | undefined) ?? []
      for (const f of force) if (!project.graph.byId.has(f)) throw unknownStep(project.graph, f)
      const planned = planSteps(project, steps, { force, sources: await hashSourcesOffThread(project.store, steps) })
      const where = executorChoice(typeof v.executor === "string" ? v.executor : undefined, recipe, undefined)
      const remote = await remoteFor(v, where.config)
      const { sources, warnings } = planned
      const entries = remote === undefined ? planned.entries : await (await import("../cache/remote/plan.ts")).withRemote(planned.entries, remote, project, steps, force)
      /** a training step on more than one process: its per-node split, rendezvous and strategy */
      const distributed = (id: string) => {
        const step = project.graph.byId.get(id)!
        const r = typeof step.def.resources === "function" ? step.def.resources(step.decoded) : step.def.resources
        const split = r as { nodes?: unknown; processesPerNode?: unknown } | undefined
        if (typeof split?.nodes !== "number" || typeof split.processesPerNode !== "number") return undefined
        const strategy = (step.decoded as { strategy?: unknown } | undefined)?.strategy
        const oneNode = where.name === "slurm" && where.config.slurm?.gangOnOneNode === true
        return distributionPlan(where.name, { nodes: split.nodes, processesPerNode: split.processesPerNode, strategy }, oneNode)
      }
      const placement = (id: string) => {
        const step = project.graph.byId.get(id)!
        const request = requestOf(step)
        const d = distributed(id)
        // a multi-node step's job asks for each node's share (cluster-executor.ts resourcesOf)
        const perNode = d !== undefined && d.nodes > 1
          ? { gpus: Math.ceil(request.gpus / d.nodes), cpus: Math.ceil(request.cpus / d.nodes), memoryGb: (request.memoryGb ?? 0) / d.nodes, nodes: d.nodes }
          : request
        return describePlacement(where.name, where.config, id, step.def.kind, perNode)
      }
      if (format !== undefined) {
        process.stdout.write(renderPlanGraph(entries, format))
      } else if (v.json === true) {
        for (const [p, hash] of sources) process.stdout.write(JSON.stringify({ event: "source", path: p, hash }) + "\n")
        for (const e of entries) {
          const d = distributed(e.step)
          process.stdout.write(JSON.stringify({ event: "plan", step: e.step, kind: e.kind, status: e.status, reasons: e.reasons, needs: e.needs, key: e.key ?? null, where: placement(e.step), ...(d !== undefined ? { distributed: d } : {}) }) + "\n")
        }
      } else {
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`)
        process.stdout.write(renderPlan(entries, { color: process.stdout.isTTY === true && colorEnabled() }))
        if (where.name !== "local") {
          process.stdout.write(`\nwhere steps would run (${where.name}):\n`)
          for (const e of entries) if (e.status !== "cached") process.stdout.write(`  ${e.step}: ${placement(e.step)}\n`)
        }
        const gangs = entries.flatMap((e) => {
          const d = e.status !== "cached" ? distributed(e.step) : undefined
          return d !== undefined ? [`  ${e.step}: ${describeDistribution(d)}\n`] : []
        })
        if (gangs.length > 0) process.stdout.write(`\ndistributed training (${where.name}):\n${gangs.join("")}`)
      }
      return 0
    } finally {
      project.scan?.close()
      project.store.close()
    }
  }
}

const show: Command = {
  options: { ...storeOption, recipe: { type: "string" }, json: { type: "boolean" } },
  run: async (v, positionals) => (await import("./show.ts")).showStep(v, positionals)
}

const logs: Command = {
  options: { ...storeOption, recipe: { type: "string" } },
  run: async (v, positionals) => (await import("./show.ts")).printLogs(v, positionals)
}

const cache: Command = {
  options: {
    ...storeOption,
    recipe: { type: "string" },
    json: { type: "boolean" },
    "max-size": { type: "string" },
    "dry-run": { type: "boolean" },
    "checkpoint-days": { type: "string" },
    "request-days": { type: "string" },
    repair: { type: "boolean" },
    remote: { type: "string" },
    "remote-max-age-days": { type: "string" }
  },
  run: async (v, positionals) => {
    const root = storeRootFor(v)
    const sub = positionals[0]
    const remote = sub === "gc" || sub === "verify" ? await remoteFor(v, loadProjectConfig(typeof v.recipe === "string" ? path.dirname(path.resolve(v.recipe)) : process.cwd())) : undefined
    if (!fs.existsSync(path.join(root, "cache.db"))) {
      // a machine with no store of its own may still look after the shared remote
      if (remote !== undefined) return (await import("../cache/remote/cli.ts")).remoteCacheCommand(remote, undefined, sub!, v)
      throw new UsageError({ message: `no store at ${root} (run a recipe first, or pass --store)` })
    }
    const store = Store.open(root)
    try {
      const code = (await import("./cache.ts")).cacheCommand(store, positionals, v)
      if (remote === undefined) return code
      return Math.max(code, await (await import("../cache/remote/cli.ts")).remoteCacheCommand(remote, store, sub!, v))
    } finally {
      store.close()
    }
  }
}

/** Optional components `anneal setup --with NAME` builds besides the Python environment. */
const setupComponents = ["llama-cpp"] as const

const setup: Command = {
  options: { force: { type: "boolean" }, quiet: { type: "boolean" }, with: { type: "string", multiple: true } },
  run: async (v) => {
    const components = ((v.with as ReadonlyArray<string> | undefined) ?? []).flatMap((w) => w.split(","))
    const unknown = components.find((c) => !(setupComponents as ReadonlyArray<string>).includes(c))
    if (unknown !== undefined) {
      throw new UsageError({ message: `setup: --with takes ${setupComponents.join(", ")}; got "${unknown}"` })
    }
    const log = v.quiet === true ? () => {} : (l: string) => process.stderr.write(l + "\n")
    const { setupPythonEnv } = await import("../engine/python-setup.ts")
    await setupPythonEnv(log, { force: v.force === true })
    if (components.includes("llama-cpp")) {
      const { ensureLlamaCpp } = await import("../engine/components/llama-cpp.ts")
      await ensureLlamaCpp(log, { force: v.force === true })
    }
    return 0
  }
}

const watch: Command = {
  options: {
    ...storeOption,
    json: { type: "boolean" },
    jobs: { type: "string", short: "j" },
    gpus: { type: "string" },
    "allow-cpu": { type: "boolean" },
    "keep-going": { type: "boolean", short: "k" }
  },
  run: async (v, positionals) => {
    const recipe = needRecipe(positionals, "watch")
    // watch.ts pulls in chokidar; load it only for this command
    const mod = (await import("./watch.ts")) as {
      watchCommand: (recipe: string, values: Record<string, unknown>) => Promise<number>
    }
    return mod.watchCommand(recipe, v)
  }
}

const execStepCommand: Command = {
  options: {},
  run: async (_v, positionals) => {
    const spec = positionals[0]
    if (spec === undefined) throw new UsageError({ message: "exec-step: give the spec file" })
    return (await import("./exec-step.ts")).execStep(spec)
  }
}

const steps: Command = {
  options: { markdown: { type: "boolean" }, recipe: { type: "string" } },
  run: async (v, positionals) => (await import("./steps.ts")).stepsCommand(v, positionals)
}

const init: Command = {
  options: { anneal: { type: "string" } },
  run: async (v, positionals) => (await import("./init.ts")).initCommand(v, positionals)
}

export const commands: Record<string, Command> = {
  init,
  run,
  plan,
  show,
  logs,
  cache,
  setup,
  watch,
  "exec-step": execStepCommand,
  steps
}
