/**
 * Pieces every data step shares: param helpers, the input reader set-up, and the removal log that
 * becomes `report.json` (counts per rule with examples) and `removed.jsonl` (every removed row, with
 * why), both beside `data.jsonl`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import type { Located } from "./jsonl.ts"
import { preview } from "./text.ts"

import { withDefault } from "../../engine/params.ts"
export { withDefault }

export const OnInvalid = withDefault(Schema.Literals(["error", "skip"]), "error").annotate({
  description: "a row that is not valid JSON or not of the format: error (naming file:line) or skip (counted in the report)"
})

export const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
export const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
export const UnitInterval = Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 }))

/** Where a row came from, for reports: "data.jsonl:12". */
export const locationOf = (r: Located<unknown>): string => `${path.basename(r.file)}:${r.line}`

export interface RemovalExample {
  readonly at: string
  readonly text: string
  readonly [extra: string]: unknown
}

/**
 * Counts removals per rule, keeps the first few examples of each, and streams every removal to
 * `removed.jsonl` so the full list never sits in memory.
 */
export class RemovalLog {
  readonly counts: Record<string, number> = {}
  readonly examples: Record<string, Array<RemovalExample>> = {}
  private readonly fd: number
  private pending: Array<string> = []

  constructor(dir: string, readonly maxExamples: number) {
    this.fd = fs.openSync(path.join(dir, "removed.jsonl"), "w")
  }

  remove(rule: string, at: string, text: string, extra: Record<string, unknown> = {}): void {
    this.counts[rule] = (this.counts[rule] ?? 0) + 1
    const list = (this.examples[rule] ??= [])
    if (list.length < this.maxExamples) list.push({ at, text: preview(text), ...extra })
    this.pending.push(JSON.stringify({ at, rule, ...extra }) + "\n")
    if (this.pending.length >= 4096) this.flush()
  }

  get total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0)
  }

  private flush(): void {
    if (this.pending.length > 0) fs.writeSync(this.fd, this.pending.join(""))
    this.pending = []
  }

  close(): void {
    this.flush()
    fs.closeSync(this.fd)
  }
}
