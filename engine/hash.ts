/** Content hashing lives with the store that needs it (cache/hash.ts); the engine's modules import it from here. */
export * from "../cache/hash.ts"
