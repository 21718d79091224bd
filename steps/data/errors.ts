/**
 * The one error data steps raise for bad input: it names the file, the line and the field, so a user
 * can open the file at the right place. The message is a single line.
 */
import * as Data from "effect/Data"

export class DatasetError extends Data.TaggedError("DatasetError")<{
  readonly message: string
  readonly file: string
  readonly line?: number | undefined
  readonly field?: string | undefined
  readonly cause?: unknown
}> {
  static at(file: string, line: number | undefined, what: string, field?: string, cause?: unknown): DatasetError {
    const where = line === undefined ? file : `${file}:${line}`
    const f = field === undefined || field === "" ? "" : ` field ${field}:`
    return new DatasetError({ message: `${where}:${f} ${what}`, file, line, field, cause })
  }
}

/** Turns effect/Schema's "Expected string\n  at ["messages"][0]["role"]" into a field path and a reason. */
export const describeSchemaIssue = (e: unknown): { readonly field: string; readonly reason: string } => {
  const raw = e instanceof Error ? e.message : String(e)
  const lines = raw.split("\n").map((l) => l.trim()).filter((l) => l.length > 0)
  let field = ""
  const reasons: Array<string> = []
  for (const l of lines) {
    const m = /^at (\[.*\])$/.exec(l)
    if (m !== null) {
      if (field === "") field = [...m[1]!.matchAll(/\[("?)([^\]"]*)\1\]/g)].map((x) => x[2]!).join(".")
    } else reasons.push(l)
  }
  return { field, reason: reasons[0] ?? "invalid row" }
}
