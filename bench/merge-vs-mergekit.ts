/**
 * anneal's native merges vs mergekit, side by side on the same machine and the same configs: a TIES
 * merge of two fine-tunes into a base, and a DUS upscale, of generated Llama-shaped bf16 models of
 * about --size-gb each (default 1). Reports GB/s of input tensors and peak RSS for both; each side
 * runs in its own process, after a read of its inputs warms the page cache. mergekit's import time is
 * reported apart and not counted in its speed.
 *
 *   npx tsx bench/merge-vs-mergekit.ts [--size-gb 1] [--dir /tmp/anneal-bench-merge]
 *
 * The last line is `ties merge speed vs mergekit: Nx`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import { executePlan } from "../steps/model/plan.ts"
import type { MergePlan } from "../steps/model/plan.ts"

const self = fileURLToPath(import.meta.url)
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}

const hidden = 2048
const intermediate = 5632
const vocab = 32000

/** Writes base, ft1, ft2: bf16 Llama models, one shard per layer, tensor by tensor (bounded memory). */
const generator = `
import json, os, sys, zlib, torch
from safetensors.torch import save_file
root, layers, hidden, inter, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
names = ["base", "ft1", "ft2"]
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
       "num_hidden_layers": layers, "num_attention_heads": hidden // 128, "num_key_value_heads": hidden // 128,
       "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
       "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
groups = [("embed", {"model.embed_tokens.weight": (vocab, hidden)})]
for i in range(layers):
    p = f"model.layers.{i}."
    groups.append((f"layer{i}", {p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (hidden, hidden),
        p + "self_attn.v_proj.weight": (hidden, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
        p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden), p + "mlp.down_proj.weight": (hidden, inter),
        p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)}))
groups.append(("head", {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}))
maps = {n: {} for n in names}
for n in names:
    os.makedirs(os.path.join(root, n), exist_ok=True)
for gi, (gname, tensors) in enumerate(groups):
    shard = f"model-{gi + 1:05d}-of-{len(groups):05d}.safetensors"
    out = {n: {} for n in names}
    for tname, shape in tensors.items():
        g = torch.Generator().manual_seed(zlib.crc32(tname.encode()))
        base = torch.randn(shape, generator=g) * 0.02
        out["base"][tname] = base.to(torch.bfloat16)
        for k, n in enumerate(names[1:]):
            out[n][tname] = (base + torch.randn(shape, generator=g) * 0.002).to(torch.bfloat16)
        del base
    for n in names:
        save_file(out[n], os.path.join(root, n, shard), metadata={"format": "pt"})
        for tname in tensors:
            maps[n][tname] = shard
    del out
for n in names:
    json.dump({"metadata": {}, "weight_map": maps[n]}, open(os.path.join(root, n, "model.safetensors.index.json"), "w"))
    json.dump(cfg, open(os.path.join(root, n, "config.json"), "w"))
`

/** Runs mergekit's run_merge on a YAML config in this process; prints {seconds, importSeconds, maxRssMb}. */
const mergekitRunner = `
import json, resource, sys, time
t0 = time.time()
import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions
t1 = time.time()
cfg = MergeConfiguration.model_validate(yaml.safe_load(open(sys.argv[1])))
run_merge(cfg, sys.argv[2], MergeOptions(copy_tokenizer=False, quiet=True, write_model_card=False))
t2 = time.time()
print(json.dumps({"seconds": t2 - t1, "importSeconds": t1 - t0, "maxRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`

interface Result {
  readonly seconds: number
  readonly maxRssMb: number
  readonly importSeconds?: number
}

const dirBytes = (dir: string): number =>
  fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors")).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0)

/** Reads the inputs once so that both sides start from a warm page cache (the first reader would otherwise pay the disk). */
const warm = (dirs: ReadonlyArray<string>): void => {
  const buf = Buffer.allocUnsafe(8 << 20)
  for (const dir of dirs) {
    for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".safetensors"))) {
      const fd = fs.openSync(path.join(dir, f), "r")
      while (fs.readSync(fd, buf, 0, buf.length, null) > 0) {}
      fs.closeSync(fd)
    }
  }
}

const plans = (layers: number): Record<"ties" | "dus", { plan: MergePlan; dirs: Array<string>; yaml: (root: string) => string }> => {
  const m = Math.max(1, Math.floor(layers / 4))
  return {
    ties: {
      plan: { method: "ties", models: [{ model: 0, parameters: { weight: 0.5, density: 0.5 } }, { model: 1, parameters: { weight: 0.5, density: 0.5 } }], base: 2, seed: 0 },
      dirs: ["ft1", "ft2", "base"],
      yaml: (root) => `merge_method: ties\nbase_model: ${root}/base\nmodels:\n  - model: ${root}/ft1\n    parameters: {weight: 0.5, density: 0.5}\n  - model: ${root}/ft2\n    parameters: {weight: 0.5, density: 0.5}\ndtype: float32\nout_dtype: bfloat16\n`
    },
    dus: {
      plan: { method: "passthrough", slices: [{ sources: [{ model: 0, layers: [0, layers - m] }] }, { sources: [{ model: 0, layers: [m, layers] }] }], seed: 0 },
      dirs: ["base"],
      yaml: (root) => `merge_method: passthrough\nslices:\n  - sources:\n      - model: ${root}/base\n        layer_range: [0, ${layers - m}]\n  - sources:\n      - model: ${root}/base\n        layer_range: [${m}, ${layers}]\n`
    }
  }
}

const child = async (): Promise<void> => {
  const [, , , which, root, layers] = process.argv
  const { plan, dirs } = plans(Number(layers))[which as "ties" | "dus"]
  const out = path.join(root!, `anneal-${which}`)
  fs.rmSync(out, { recursive: true, force: true })
  fs.mkdirSync(out)
  const t = performance.now()
  // bf16 output for ties, as mergekit's out_dtype
  await executePlan({ ...plan, outDtype: which === "ties" ? "BF16" : undefined }, dirs.map((d) => path.join(root!, d)), out)
  const seconds = (performance.now() - t) / 1000
  console.log(JSON.stringify({ seconds, maxRssMb: process.resourceUsage().maxRSS / 1024 }))
}

const main = async (): Promise<void> => {
  const sizeGb = Number(arg("size-gb", "1"))
  const root = arg("dir", path.join(os.tmpdir(), "anneal-bench-merge"))
  const perLayer = 4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden
  const fixed = 2 * vocab * hidden + hidden
  const layers = Math.max(2, Math.round((sizeGb * 1e9 / 2 - fixed) / perLayer))
  const env = { ...process.env, ...pythonEnvVars() }
  const marker = path.join(root, `.generated-${layers}`)
  if (!fs.existsSync(marker)) {
    fs.rmSync(root, { recursive: true, force: true })
    fs.mkdirSync(root, { recursive: true })
    console.log(`generating 3 bf16 Llama models with ${layers} layers (hidden ${hidden}) in ${root} ...`)
    await execa(pythonExecutable(), ["-c", generator, root, String(layers), String(hidden), String(intermediate), String(vocab)], { env, stdio: "inherit" })
    fs.writeFileSync(marker, "")
  }
  const largest = vocab * hidden * 2
  const modelBytes = dirBytes(path.join(root, "base"))
  console.log(`model: ${(modelBytes / 1e9).toFixed(2)} GB bf16, ${layers} layers, largest tensor ${(largest / 1e6).toFixed(0)} MB; ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`)

  const rows: Array<{ op: string; inputBytes: number; anneal: Result; mergekit: Result }> = []
  for (const op of ["ties", "dus"] as const) {
    const p = plans(layers)[op]
    const inputBytes = op === "ties" ? 3 * modelBytes : dirBytes(path.join(root, "base")) * (2 * (layers - Math.max(1, Math.floor(layers / 4))) / layers)
    const inputs = p.dirs.map((d) => path.join(root, d))
    warm(inputs)
    const ours = await execa(process.execPath, [...process.execArgv, self, "--child", op, root, String(layers)], { env })
    const anneal = JSON.parse(ours.stdout.trim().split("\n").pop()!) as Result
    const yml = path.join(root, `${op}.yml`)
    fs.writeFileSync(yml, p.yaml(root))
    const mkOut = path.join(root, `mergekit-${op}`)
    fs.rmSync(mkOut, { recursive: true, force: true })
    fs.rmSync(path.join(root, `anneal-${op}`), { recursive: true, force: true })
    warm(inputs)
    const theirs = await execa(pythonExecutable(), ["-c", mergekitRunner, yml, mkOut], { env })
    const mergekit = JSON.parse(theirs.stdout.trim().split("\n").pop()!) as Result
    rows.push({ op, inputBytes, anneal, mergekit })
  }

  const gbps = (r: { inputBytes: number }, x: Result) => r.inputBytes / 1e9 / x.seconds
  console.log("")
  console.log("operation  | input GB | anneal s | anneal GB/s | anneal peak RSS | mergekit s | mergekit GB/s | mergekit peak RSS | speed ratio")
  for (const r of rows) {
    console.log(
      `${r.op.padEnd(10)} | ${(r.inputBytes / 1e9).toFixed(2).padStart(8)} | ${r.anneal.seconds.toFixed(1).padStart(8)} | ${gbps(r, r.anneal).toFixed(2).padStart(11)} | ${r.anneal.maxRssMb.toFixed(0).padStart(12)} MB | ${r.mergekit.seconds.toFixed(1).padStart(10)} | ${gbps(r, r.mergekit).toFixed(2).padStart(13)} | ${r.mergekit.maxRssMb.toFixed(0).padStart(14)} MB | ${(r.mergekit.seconds / r.anneal.seconds).toFixed(2)}x`
    )
  }
  console.log(`(mergekit import time, not counted: ${rows.map((r) => r.mergekit.importSeconds!.toFixed(1) + " s").join(", ")}; RSS target for anneal: 2 x largest tensor + constant = ${(2 * largest / 1e6).toFixed(0)} MB + c)`)
  const ties = rows.find((r) => r.op === "ties")!
  console.log(`ties merge speed vs mergekit: ${(ties.mergekit.seconds / ties.anneal.seconds).toFixed(2)}x`)
}

if (process.argv[2] === "--child") await child()
else await main()
