/**
 * A trace: what went into a step's key, stored with every run so staleness can be explained as a diff
 * (engine/keys.ts computes keys and diffs from it; the cache stores and verifies it).
 */
export interface Trace {
  readonly kind: string
  readonly version: number
  readonly params: Record<string, unknown>
  readonly inputs: Record<string, string | ReadonlyArray<string>>
}
