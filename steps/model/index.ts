/** Model surgery: native TS steps over safetensors (see docs/model-surgery.md). */
export { merge, MergeParams } from "./merge-step.ts"
export { upscale, UpscaleParams } from "./upscale-step.ts"
export { loraMerge, LoraMergeParams } from "./lora-merge-step.ts"
