/**
 * Data steps (the Platypus curation stage) and the dataset I/O other steps build on.
 *
 * Step kinds: `format`, `clean`, `dedup` (exact, minhash), `decontaminate` (n-gram) run in TS as shard
 * tasks (fanout.ts: in the step's process or in worker processes; setShardExecutor hands them to a
 * cluster); `dedup-semantic` and `decontaminate-semantic` fan out too, their embedding stage served by
 * Python processes (sentence embeddings).
 */
export { clean, CleanParams } from "./clean.ts"
export { format, FormatParams } from "./format.ts"
export { convertRow, instructionPrompt } from "./convert.ts"
export { dedup, DedupParams, MinHashParams } from "./dedup.ts"
export { decontaminate, DecontaminateParams } from "./decontaminate.ts"
export { categorize } from "./review.ts"
export { dedupSemantic, decontaminateSemantic, DedupSemanticParams, DecontaminateSemanticParams } from "./semantic.ts"
export type { Category } from "./review.ts"
export { DatasetError } from "./errors.ts"
export { readRows, readJsonl, datasetFiles, readFileLines, RowReader } from "./jsonl.ts"
export type { InvalidRow, Located, OnInvalid, ReadOptions, ReadStats } from "./jsonl.ts"
export { DatasetWriter, writeDataset, writeReport } from "./writer.ts"
export { executeTask, setShardExecutor, shardCommand } from "./fanout.ts"
export type { ShardExecutor, TaskSpec } from "./fanout.ts"
export { detectFormat, inferFormat, questionText, answerText, allText, fieldText } from "./formats.ts"
export type { ConcreteFormat } from "./formats.ts"
