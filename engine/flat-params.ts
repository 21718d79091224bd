/**
 * A fast path for decoding the params of a kind whose schema is flat: a struct whose fields are strings,
 * numbers, booleans, literals, null or undefined, unions or arrays of those, none with an encoding (a
 * transformation or a decoding default) and no index signature. For such a schema, decoding is
 * checking plus copying, and encoding the result gives the same values back; Effect's decoder does that
 * by running an Effect per value, which was the largest part of validating a generated 10,000-step
 * recipe (40 ms of 100).
 *
 * The fast path only ever accepts: the value is a plain object, every key it has is a field of the
 * struct, and `Schema.is` (the same parser, on the same AST, with the checks: `Int`, `between`...) says
 * it is the type. Then the value is copied field by field. Anything else (an excess key, a wrong type, a
 * value that is not a plain object) goes to the decoder, which gives the error message users know.
 */
import * as Schema from "effect/Schema"
import type * as SchemaAST from "effect/SchemaAST"

const simple = new Set(["String", "Number", "Boolean", "Literal", "Null", "Undefined"])
/** what a field's context may say: whether the key is optional or mutable, nothing else set */
const contextKeys = new Set(["isOptional", "isMutable"])

/** A node decoding leaves as it is: no encoding (nor encoding-side checks), and no default. */
const untransformed = (ast: SchemaAST.AST): boolean => {
  const a = ast as SchemaAST.AST & { readonly encodingChecks?: unknown; readonly context?: object }
  if (a.encoding !== undefined || a.encodingChecks !== undefined) return false
  return a.context === undefined ||
    Object.entries(a.context).every(([k, v]) => contextKeys.has(k) || v === undefined)
}

const flatValue = (ast: SchemaAST.AST): boolean => {
  if (!untransformed(ast)) return false
  if (simple.has(ast._tag)) return true
  if (ast._tag === "Union") return ast.types.every(flatValue)
  if (ast._tag === "Arrays") return ast.elements.every(flatValue) && ast.rest.every(flatValue)
  return false
}

/**
 * For a flat struct schema, a function giving a copy of a value that decodes (the decoded value, which
 * is also its encoding), or undefined for any other value; for any other schema, undefined.
 */
export const flatDecoder = (schema: Schema.Top): ((u: unknown) => Record<string, unknown> | undefined) | undefined => {
  const ast = schema.ast
  if (ast._tag !== "Objects" || !untransformed(ast) || ast.indexSignatures.length > 0) return undefined
  const fields: Array<string> = []
  for (const p of ast.propertySignatures) {
    if (typeof p.name !== "string" || !flatValue(p.type)) return undefined
    fields.push(p.name)
  }
  const known = new Set(fields)
  const is = Schema.is(schema)
  return (u) => {
    if (u === null || typeof u !== "object") return undefined
    const proto = Object.getPrototypeOf(u) as unknown
    if (proto !== Object.prototype && proto !== null) return undefined
    if (Object.getOwnPropertySymbols(u).length > 0) return undefined
    for (const k of Object.getOwnPropertyNames(u)) if (!known.has(k)) return undefined
    if (!is(u)) return undefined
    const value = u as Record<string, unknown>
    const copy: Record<string, unknown> = {}
    for (const f of fields) {
      if (!Object.hasOwn(value, f)) continue
      const v = value[f]
      copy[f] = Array.isArray(v) ? [...(v as ReadonlyArray<unknown>)] : v
    }
    return copy
  }
}

/** A copy of a flat value that shares nothing with it (its arrays are copied too). */
export const copyFlat = (value: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  const copy: Record<string, unknown> = {}
  for (const k in value) {
    const v = value[k]
    copy[k] = Array.isArray(v) ? [...(v as ReadonlyArray<unknown>)] : v
  }
  return copy
}
