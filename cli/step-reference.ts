/**
 * The reference of a step kind, read from its definition alone: params (from the effect/Schema struct:
 * type, default, doc annotation, preset values), inputs, output and resources. `anneal steps` prints it
 * and docs/steps.md is generated from it, so the two cannot disagree with the code.
 */
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import { rowSchemas } from "../engine/rows.ts"
import type { AnyPort, Resources, StepDefinition } from "../engine/step.ts"

export interface ParamReference {
  readonly name: string
  /** a TypeScript-like spelling, with constraints: `integer (> 0)`, `"lora" | "full" | null` */
  readonly type: string
  /** "required", "optional" (no default: unset), or the default as JSON */
  readonly default: string
  readonly doc: string
  /** not part of the key (execution-only) */
  readonly executionOnly: boolean
}

export interface PresetTable {
  /** preset name -> param -> value; `default` holds what a null param becomes when the preset leaves it */
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<{ readonly param: string; readonly values: ReadonlyArray<string> }>
}

export interface PortReference {
  readonly name: string
  /** e.g. `dataset<instruction>`, `model`, `model[]`, `tokenizer?` */
  readonly type: string
  readonly doc: string
}

export interface KindReference {
  readonly kind: string
  readonly version: number
  readonly description: string
  readonly implementation: "ts" | "command"
  readonly params: ReadonlyArray<ParamReference>
  readonly presets: PresetTable | undefined
  readonly inputs: ReadonlyArray<PortReference>
  readonly output: string
  /** with default params; `depends on params` is said when resources are a function of them */
  readonly resources: string
}

const json = (v: unknown): string => JSON.stringify(v)

/** The checks' own words, shortened: `a value greater than 0` -> `> 0`; the integer check names the type instead. */
const constraints = (ast: SchemaAST.AST): Array<string> =>
  (ast.checks ?? [])
    .map((c) => String((c.annotations as { expected?: unknown } | undefined)?.expected ?? ""))
    .filter((e) => e !== "" && e !== "an integer" && e !== "a finite number")
    .map((e) =>
      e.replace(/^an? (value|string|array) /, "")
        .replace(/^greater than or equal to /, ">= ").replace(/^greater than /, "> ")
        .replace(/^less than or equal to /, "<= ").replace(/^less than /, "< ")
        .replace(/^with a length of at least /, "length >= ").replace(/^with a length of at most /, "length <= ")
    )

const isInt = (ast: SchemaAST.AST) => (ast.checks ?? []).some((c) => (c.annotations as { expected?: unknown } | undefined)?.expected === "an integer")

/** A schema's type as a reader would write it in TypeScript, constraints after a comma. */
export const typeOf = (ast: SchemaAST.AST, depth = 0): string => {
  const base = ((): string => {
    const a = ast as any
    if (depth > 4) return "..."
    switch (a._tag) {
      case "Number":
        return isInt(ast) ? "integer" : "number"
      case "String":
        return "string"
      case "Boolean":
        return "boolean"
      case "Null":
        return "null"
      case "Undefined":
        return "undefined"
      case "Literal":
        return json(a.literal)
      case "Union": {
        const members = (a.types as Array<SchemaAST.AST>).filter((t) => !(a.context?.isOptional && t._tag === "Undefined"))
        return members.map((t) => typeOf(t, depth + 1)).join(" | ")
      }
      case "Arrays": {
        if (a.rest.length === 0) return `[${a.elements.map((e: SchemaAST.AST) => typeOf(e, depth + 1)).join(", ")}]`
        const item = typeOf(a.rest[0], depth + 1)
        return item.includes(" ") ? `Array<${item}>` : `${item}[]`
      }
      case "Objects": {
        const props = a.propertySignatures.map((p: any) => `${String(p.name)}${p.type.context?.isOptional ? "?" : ""}: ${typeOf(p.type, depth + 1)}`)
        const index = a.indexSignatures.map((s: any) => `[key: ${typeOf(s.parameter, depth + 1)}]: ${typeOf(s.type, depth + 1)}`)
        return `{ ${[...props, ...index].join("; ")} }`
      }
      default:
        return String(a._tag).toLowerCase()
    }
  })()
  const more = constraints(ast)
  return more.length === 0 ? base : `${base} (${more.join(", ")})`
}

const describeField = (name: string, field: Schema.Top, executionOnly: ReadonlySet<string>): ParamReference => {
  const one = Schema.Struct({ [name]: field }) as unknown as Schema.Codec<Record<string, unknown>, unknown>
  let fallback: string
  try {
    const value = Schema.decodeUnknownSync(one)({})[name]
    fallback = value === undefined ? "optional" : json(value)
  } catch {
    fallback = "required"
  }
  return {
    name,
    type: typeOf(field.ast),
    default: fallback,
    doc: SchemaAST.resolveDescription(field.ast) ?? "",
    executionOnly: executionOnly.has(name)
  }
}

const presetTable = (fields: Record<string, Schema.Top>): PresetTable | undefined => {
  const annotations = (fields.preset?.ast.annotations ?? {}) as {
    presets?: Record<string, Record<string, unknown>>
    presetDefaults?: Record<string, unknown>
  }
  if (annotations.presets === undefined) return undefined
  const named = Object.entries(annotations.presets).filter(([, values]) => Object.keys(values).length > 0)
  const defaults = annotations.presetDefaults
  const columns = [...(defaults !== undefined ? ["no preset"] : []), ...named.map(([n]) => n)]
  const params = [...new Set([...Object.keys(defaults ?? {}), ...named.flatMap(([, v]) => Object.keys(v))])]
  const cell = (v: unknown) => (v === undefined ? "" : json(v))
  return {
    columns,
    rows: params.map((param) => ({
      param,
      values: [...(defaults !== undefined ? [cell(defaults[param])] : []), ...named.map(([, v]) => cell(v[param]))]
    }))
  }
}

const rowFormatOf = (rows: Schema.Top | undefined): string | undefined =>
  rows === undefined ? undefined : Object.entries(rowSchemas).find(([, s]) => s === rows)?.[0] ?? "custom rows"

const portType = (p: AnyPort): string => {
  const rows = p.many ? undefined : rowFormatOf(p.rows)
  return `${p.kind}${rows !== undefined ? `<${rows}>` : ""}${p.many ? "[]" : ""}${p.optional ? "?" : ""}`
}

const resourcesOf = (def: StepDefinition): string => {
  const show = (r: Resources | undefined) => {
    const parts = [
      r?.gpus ? `${r.gpus} GPU${r.gpus > 1 ? "s" : ""}${r.cpuFallback ? " (CPU with --allow-cpu)" : ""}` : undefined,
      `${r?.cpus ?? 1} CPU slot${(r?.cpus ?? 1) > 1 ? "s" : ""}`,
      r?.memoryGb ? `${r.memoryGb} GiB` : undefined
    ]
    return parts.filter((x) => x !== undefined).join(", ")
  }
  if (typeof def.resources !== "function") return show(def.resources)
  try {
    const defaults = Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>)({})
    return `${show(def.resources(defaults))} with default params (depends on params)`
  } catch {
    return "depends on params"
  }
}

/** The reference of one kind, from its definition. */
export const describeKind = (def: StepDefinition): KindReference => {
  const fields = ((def.params as { readonly fields?: Record<string, Schema.Top> }).fields ?? {})
  const executionOnly = new Set(def.executionOnly ?? [])
  return {
    kind: def.kind,
    version: def.version,
    description: def.description ?? "",
    implementation: def.implementation.run !== undefined ? "ts" : "command",
    params: Object.entries(fields).map(([name, f]) => describeField(name, f, executionOnly)),
    presets: presetTable(fields),
    inputs: Object.entries(def.inputs).map(([name, p]) => ({ name, type: portType(p), doc: p.description ?? "" })),
    output: portType(def.output),
    resources: resourcesOf(def)
  }
}
