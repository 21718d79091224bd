/**
 * Helpers for declaring step params, shared by the built-in kinds and users' custom kinds.
 *
 * Conventions (docs/steps.md): param names are camelCase in every kind (a Python worker's config
 * dataclass keeps snake_case; python/anneal_worker/protocol.py maps the two, in one place). A param's
 * doc is its `description` annotation, which `anneal steps KIND` and docs/steps.md print.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/**
 * A param the recipe may leave out (or set to `undefined`): decoding fills in `value`, so the decoded
 * params, the spec and the key all carry the default. `value` is given in the encoded (JSON) form.
 * The one default helper of the code base: every kind declares its defaults with it.
 */
export const withDefault = <S extends Schema.Top>(schema: S, value: S["Encoded"]) =>
  Schema.withDecodingDefault(Effect.succeed(value))(schema)

/**
 * The `seed` param of a step that samples (shuffling, dropout, initialisation, MinHash permutations,
 * DARE masks, few-shot draws). It is an ordinary param, so it is part of the key: a recipe sweeps seeds
 * by calling the step once per seed. The engine passes it on as `ctx.seed` and the spec's `seed`.
 */
export const seedParam = (defaultSeed = 0) =>
  withDefault(Schema.Int, defaultSeed).annotate({
    description: `random seed; part of the key, so each seed is its own cached result (default ${defaultSeed})`
  })
