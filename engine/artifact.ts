/**
 * Typed handles to artifacts. A step call returns a handle; passing it to another step's port is how a
 * recipe wires the graph. The phantom row type is invariant, so `Dataset<Text>` does not fit a port
 * that wants `Dataset<Preference>`, and a `Model` does not fit a port that wants an `Adapter`: wrong
 * wiring is a compile error (see test/engine/wiring.typecheck.ts).
 *
 * On disk every artifact is a directory:
 * - dataset:   `data.jsonl` (one row per line) and `dataset.json` ({format, rows}), or shards in the
 *              Hugging Face layout (`data/train-00000-of-00008.parquet` or `.jsonl`) that dataset.json
 *              lists ({format, rows, shards}); see steps/data/shard-output.ts
 * - model:     a Hugging Face model directory (config.json, *.safetensors, tokenizer files)
 * - adapter:   a PEFT adapter directory (adapter_config.json, adapter_model.safetensors)
 * - tokenizer: a Hugging Face tokenizer directory (tokenizer.json, tokenizer_config.json)
 * - report:    `report.json` plus any human-readable files (report.md, *.svg)
 * - file:      any directory; the escape hatch for custom steps
 * A Source handle may instead point at a single file or a glob of shards (a dataset outside the store).
 */
import type { Row } from "./rows.ts"

export type ArtifactKind = "dataset" | "model" | "adapter" | "tokenizer" | "report" | "file"

declare const RowType: unique symbol

/** Internal graph node a handle points at; defined in graph.ts, opaque to recipes. */
export interface NodeRef {
  readonly id: string
}

export interface Handle<K extends ArtifactKind, R = unknown> {
  readonly _tag: "Handle"
  readonly kind: K
  readonly node: NodeRef
  /** Phantom, never set: makes the row type invariant. */
  readonly [RowType]?: (row: R) => R
}

export type Dataset<R extends Row = Row> = Handle<"dataset", R>
export type Model = Handle<"model">
export type Adapter = Handle<"adapter">
export type Tokenizer = Handle<"tokenizer">
export type Report = Handle<"report">
export type Files = Handle<"file">

/** Any handle; ports that accept any dataset use `AnyDataset`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyHandle = Handle<ArtifactKind, any>
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDataset = Handle<"dataset", any>

export const makeHandle = <H extends AnyHandle>(kind: H["kind"], node: NodeRef): H =>
  ({ _tag: "Handle", kind, node }) as unknown as H

export const isHandle = (u: unknown): u is AnyHandle =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Handle"
