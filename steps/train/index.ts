/** The training step kinds: tokenizer, pretrain, sft / sft-lora, dpo / dpo-lora, eval, eval-compare. */
export * from "./tokenizer/index.ts"
export * from "./pretrain/index.ts"
export * from "./sft/index.ts"
export * from "./dpo/index.ts"
export * from "./eval/index.ts"
export { trainingCommand, trainingResources } from "./common.ts"
