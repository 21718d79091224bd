/** Every built-in step kind. Importing this module registers them all. */
export * from "./data/index.ts"
export * from "./train/index.ts"
export * from "./model/index.ts"
export * from "./generate/index.ts"
export * from "./quantize/index.ts"
