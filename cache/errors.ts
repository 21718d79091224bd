/**
 * The errors of the cache layer: the database or store is unusable, or a source cannot be read while
 * hashing it. Both are "bad input" errors (engine/errors.ts): the CLI prints the message and exits 2.
 *
 * The store and its database travel their failures in Effect's error channel: `Store.make`,
 * `store.attempt`, `store.commitEffect`, `store.hashSourceEffect` and `db.attempt` fail with these
 * tagged errors (the synchronous methods beneath them throw the same values, for callers outside
 * Effect). Anything else a call throws is a bug and stays a defect.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

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

/** What a store or database call can fail with. */
export type StoreFailure = CacheError | SourceError

export const isStoreFailure = (e: unknown): e is StoreFailure => e instanceof CacheError || e instanceof SourceError

/**
 * Turns what a store call threw into its error-channel value: a CacheError or SourceError as it is;
 * anything else through `other` (a commit's file-system error becomes a CacheError naming its path),
 * or, without `other`, a defect.
 */
const toChannel = (other: ((e: unknown) => StoreFailure) | undefined) => (e: unknown): Effect.Effect<never, StoreFailure> =>
  isStoreFailure(e) ? Effect.fail(e) : other !== undefined ? Effect.fail(other(e)) : Effect.die(e)

/** A synchronous store or database call as an Effect, its failures in the error channel. */
export const storeTry = <A>(f: () => A, other?: (e: unknown) => StoreFailure): Effect.Effect<A, StoreFailure> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (e) {
      return toChannel(other)(e)
    }
  })

/** An asynchronous store call as an Effect, its failures in the error channel. */
export const storeTryPromise = <A>(f: () => Promise<A>, other?: (e: unknown) => StoreFailure): Effect.Effect<A, StoreFailure> =>
  Effect.tryPromise({ try: f, catch: (e) => e }).pipe(Effect.catch(toChannel(other)))
