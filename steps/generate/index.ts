/**
 * `generate`: synthetic data from a teacher model (worker.py), in four modes (textbook, instructions,
 * responses, preferences) and three backends (a local Hugging Face model with transformers, vLLM's
 * offline engine, an OpenAI-compatible HTTP endpoint, or llama.cpp's server which the step starts on a
 * GGUF from `quantize`). See docs/generate.md.
 *
 * The output is a TRL-format dataset; `generateTextbook` and the other typed helpers set the mode and
 * give the output its row type, so `generatePreferences(...)` wires into `dpo` and
 * `generateTextbook(...)` into `pretrain` without a cast.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import type { Dataset } from "../../engine/artifact.ts"
import { seedParam, withDefault } from "../../engine/params.ts"
import { requireLlamaCpp } from "../../engine/components/llama-cpp.ts"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../../engine/python.ts"
import type { Preference, PromptCompletion, Row, Text } from "../../engine/rows.ts"
import { type CallOptions, defineStep, Port } from "../../engine/step.ts"

const dir = path.dirname(fileURLToPath(import.meta.url))
const script = path.join(dir, "worker.py")

const describe = (description: string) => ({ description })
const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Strings = Schema.Array(Schema.String)

/** Mirrors GenerateConfig in worker.py (its dataclass is the source of truth for names and defaults). */
export const GenerateParams = Schema.Struct({
  mode: withDefault(Schema.Literals(["textbook", "instructions", "responses", "preferences"]), "textbook").annotate(
    describe("textbook: topic x audience x style -> {text}; instructions: self-/evol-instruct -> {prompt, completion}; responses: answer input 'data' -> {prompt, completion}; preferences: rank samples -> {prompt, chosen, rejected}")
  ),
  template: withDefault(Schema.String, "").annotate(
    describe("the mode's prompt template (\"\" = the default in docs/generate.md); placeholders: textbook {topic} {audience} {style}; self-instruct {examples}; evol-instruct {instruction}; responses and preferences {prompt}")
  ),
  responseTemplate: withDefault(Schema.String, "").annotate(describe("instructions mode: how each new task is put to the teacher ({prompt})")),
  judgeTemplate: withDefault(Schema.String, "").annotate(describe("preferences with rank judge: the scoring prompt ({prompt}, {response}); the first number in the reply is the score")),
  systemPrompt: withDefault(Schema.String, "").annotate(describe("a system message before every prompt (\"\" = none)")),
  topics: withDefault(Strings, []).annotate(describe("textbook: seed topics (added to input 'data''s text rows)")),
  audiences: withDefault(Strings, ["high school students", "college students", "curious adults"]).annotate(describe("textbook: audiences to draw from")),
  styles: withDefault(Strings, ["a textbook", "a story", "a dialogue between a teacher and a student"]).annotate(describe("textbook: styles to draw from")),
  perTopic: withDefault(PositiveInt, 1).annotate(describe("textbook: distinct (audience, style) pairs per topic, drawn per topic")),
  keepPrompt: withDefault(Schema.Boolean, false).annotate(
    describe("textbook: each row's text starts with the prompt (for a base-model teacher that continues the template's opening)")
  ),
  seedTasks: withDefault(Strings, []).annotate(describe("instructions: seed tasks (added to input 'data''s rows)")),
  method: withDefault(Schema.Literals(["self-instruct", "evol-instruct"]), "self-instruct").annotate(
    describe("instructions: self-instruct writes new tasks from a few seed examples; evol-instruct rewrites each seed task into a harder one")
  ),
  count: withDefault(NonNegativeInt, 0).annotate(describe("self-instruct: new tasks to write (0 = as many as seed tasks)")),
  examplesPerPrompt: withDefault(PositiveInt, 3).annotate(describe("self-instruct: seed tasks shown as examples per request")),
  samples: withDefault(PositiveInt, 2).annotate(describe("preferences: answers sampled per prompt (at least 2)")),
  rank: withDefault(Schema.Literals(["judge", "longer", "shorter"]), "judge").annotate(
    describe("preferences: the teacher scores each answer with judgeTemplate (judge), or a rule prefers the longer or shorter answer")
  ),
  maxNewTokens: withDefault(PositiveInt, 256).annotate(describe("tokens generated per request at most")),
  temperature: withDefault(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)), 0.8).annotate(describe("sampling temperature (0 = greedy)")),
  topP: withDefault(Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1)), 0.95).annotate(describe("nucleus sampling mass")),
  maxTokens: withDefault(NonNegativeInt, 0).annotate(
    describe("budget of completion tokens for the step (0 = none): items are kept in order until it is spent, then generation stops and says so")
  ),
  backend: withDefault(Schema.Literals(["transformers", "vllm", "openai", "llama-server"]), "transformers").annotate(
    describe("transformers: input 'model' on GPU (bf16) or CPU (fp32); vllm: vLLM's offline engine on GPUs (when installed); openai: an OpenAI-compatible server; llama-server: the step serves input 'model', a GGUF from quantize, with llama.cpp's server on loopback and asks it through the OpenAI API")
  ),
  baseUrl: withDefault(Schema.String, "").annotate(describe("openai: the API root, e.g. http://127.0.0.1:8080/v1 (not part of the key)")),
  apiModel: withDefault(Schema.String, "").annotate(describe("openai: the model's name at the endpoint (part of every request's identity)")),
  api: withDefault(Schema.Literals(["chat", "completions"]), "chat").annotate(describe("openai: /chat/completions (messages) or /completions (a plain prompt)")),
  apiKeyEnv: withDefault(Schema.String, "").annotate(
    describe("openai: the environment variable holding the API key (\"\" = none); the key itself never goes in params, logs or artifacts")
  ),
  concurrency: withDefault(PositiveInt, 4).annotate(describe("openai, llama-server: requests in flight at once (llama-server: its parallel slots)")),
  serverThreads: withDefault(PositiveInt, 2).annotate(describe("llama-server: CPU slots the step claims; the server runs on the slots granted (its --threads)")),
  maxRetries: withDefault(NonNegativeInt, 5).annotate(describe("openai: retries of a failed, rate-limited (429) or timed-out request, with exponential backoff and jitter")),
  timeoutSeconds: withDefault(Schema.Finite.check(Schema.isGreaterThan(0)), 120).annotate(describe("openai: seconds to wait for one answer")),
  retryBaseSeconds: withDefault(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)), 1).annotate(describe("openai: first backoff delay, doubled per retry (a 429's Retry-After wins)")),
  requestCache: withDefault(Schema.Boolean, true).annotate(describe("keep every answer in the content-addressed request cache, so no request is paid for twice")),
  requestCacheDir: withDefault(Schema.String, "").annotate(describe("where the request cache lives (\"\" = requests/ in the store, beside resume/)")),
  allowPickle: withDefault(Schema.Boolean, false).annotate(describe("load pickle (.bin) weights; only for files you trust")),
  seed: seedParam()
})
export type GenerateParams = typeof GenerateParams.Type
export type GenerateInput = typeof GenerateParams.Encoded

/** Where the server is, how hard to push it, and where answers are kept cannot change what a request returns. */
const executionOnly = [
  "baseUrl", "serverThreads", "apiKeyEnv", "concurrency", "maxRetries", "timeoutSeconds", "retryBaseSeconds", "requestCache", "requestCacheDir"
] as const

export const generate = defineStep({
  kind: "generate",
  version: 1,
  description: "synthetic data from a teacher model (textbook, instructions, responses, preferences)",
  params: GenerateParams,
  inputs: {
    model: Port.describe(Port.optional(Port.model()), "the teacher: a Hugging Face model (backends transformers and vllm) or a GGUF from quantize (backend llama-server)"),
    data: Port.describe(Port.optional(Port.anyDataset()), "seeds: topics (textbook), tasks (instructions), or the prompts to answer (responses, preferences)")
  },
  output: Port.anyDataset(),
  resources: (p) =>
    p.backend === "openai" ? { cpus: 1 } : p.backend === "llama-server" ? { cpus: p.serverThreads } : p.backend === "vllm" ? { gpus: 1 } : { gpus: 1, cpuFallback: true, cpus: 1 },
  executionOnly,
  sourceFiles: [script, ...["prompts.py", "backends.py", "server.py", "request_store.py"].map((f) => path.join(dir, f)),
    ...["protocol.py", "datasets.py", "training.py"].map((f) => path.join(projectRoot, "python", "anneal_worker", f))],
  checkParams: (p, counts) => {
    if (p.backend === "openai") {
      if (p.baseUrl === "") return { param: "baseUrl", message: "backend openai needs the API root, e.g. http://127.0.0.1:8080/v1" }
      if (p.apiModel === "") return { param: "apiModel", message: "backend openai needs the model's name at the endpoint" }
      if (p.apiKeyEnv !== "" && !process.env[p.apiKeyEnv]) {
        return { param: "apiKeyEnv", message: `the environment variable ${p.apiKeyEnv} (the API key) is not set` }
      }
    } else if (p.backend === "llama-server" && p.baseUrl !== "") {
      return { param: "baseUrl", message: "backend llama-server serves input 'model' itself: leave baseUrl empty (or use backend openai for a running server)" }
    } else if (counts.model === 0) {
      return { param: "backend", message: `backend ${p.backend} needs input 'model' (the teacher)` }
    }
    if ((p.mode === "responses" || p.mode === "preferences") && counts.data === 0) {
      return { param: "mode", message: `mode ${p.mode} needs input 'data' (the prompts to answer)` }
    }
    if (p.mode === "preferences" && p.samples < 2) return { param: "samples", message: "preferences need at least 2 samples per prompt" }
    return undefined
  },
  command: (ctx) => {
    const env: Record<string, string> = { ...pythonEnvVars() }
    if (ctx.params.backend === "llama-server") {
      const llama = requireLlamaCpp(`step "${ctx.step}" (generate with backend llama-server)`)
      env.ANNEAL_LLAMA_SERVER = llama.bin["llama-server"]
      env.ANNEAL_LLAMA_CPP_COMMIT = llama.commit
    }
    return { argv: [checkPythonEnv(), script, ctx.specPath], env }
  }
})

type Inputs = { readonly model?: import("../../engine/artifact.ts").Model | undefined; readonly data?: Dataset<any> | undefined }
type Typed<R extends Row, M extends GenerateInput["mode"]> = (
  inputs: Inputs,
  params?: Omit<GenerateInput, "mode"> & { readonly mode?: M },
  options?: CallOptions
) => Dataset<R>
const typed = <R extends Row, M extends GenerateInput["mode"]>(mode: M): Typed<R, M> => (inputs, params, options) =>
  generate(inputs, { ...params, mode }, options) as Dataset<R>

/** textbook sections and exercises, phi-1.5 style ({text}) */
export const generateTextbook = typed<Text, "textbook">("textbook")
/** self-instruct / evol-instruct tasks with the teacher's answers ({prompt, completion}) */
export const generateInstructions = typed<PromptCompletion, "instructions">("instructions")
/** the teacher's answers to input 'data''s prompts ({prompt, completion}; {messages} for conversations) */
export const generateResponses = typed<PromptCompletion, "responses">("responses")
/** ranked answer pairs for dpo ({prompt, chosen, rejected}) */
export const generatePreferences = typed<Preference, "preferences">("preferences")
