/**
 * The errors of the cache layer: the database or store is unusable, or a source cannot be read while
 * hashing it. Both are "bad input" errors (engine/errors.ts): the CLI prints the message and exits 2.
 */
import * as Data from "effect/Data"

/** A source (data file, base model) is missing or unreadable. */
export class SourceError extends Data.TaggedError("SourceError")<{
  readonly message: string
  readonly path: string
  readonly cause?: unknown
}> {}

/** The cache database or the store is unusable (corrupt, newer schema, not writable). */
export class CacheError extends Data.TaggedError("CacheError")<{
  readonly message: string
  readonly path: string
  readonly cause?: unknown
}> {}
