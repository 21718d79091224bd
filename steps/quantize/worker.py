"""quantize: turn a Hugging Face causal LM into a quantized model people can run.

Run by the engine as `python steps/quantize/worker.py SPEC.json` (see engine/spec.ts); the TS side
(index.ts) passes llama.cpp's paths in ANNEAL_LLAMA_CPP_* environment variables for the GGUF format.

- format "gguf": llama.cpp's own converter (convert_hf_to_gguf.py, through convert.py) writes an f16
  (or bf16/f32) GGUF with the tokenizer embedded, and llama.cpp's llama-quantize turns it into the
  requested type (q8_0, q4_K_M, ...). Output: model.gguf.
- format "bnb": bitsandbytes through transformers: nf4/fp4 (4-bit, double quantization by default)
  or int8 (LLM.int8), saved with save_pretrained, so config.json carries the quantization_config and
  transformers reloads it as is. Output: a Hugging Face model directory.
- format "gptq": llm-compressor's GPTQModifier (one-shot, with the `calibration` text rows), saved in
  the compressed-tensors format transformers loads. Output: a Hugging Face model directory.
- format "awq": llm-compressor's AWQModifier (activation-aware scaling, searched on the `calibration`
  rows) followed by its QuantizationModifier (round-to-nearest int weights, symmetric, grouped), saved
  like gptq. Runs on CPU: llm-compressor pins its activation cache for host-to-GPU copies
  unconditionally, which needs a CUDA driver; without CUDA that pinning (a transfer optimization, no
  effect on the result) is skipped. Only symmetric types: transformers 5.23 cannot reload the packed
  zero-points of llm-compressor's asymmetric (W4A16_ASYM) output.

With a `heldOut` text input, the step measures perplexity of the full-precision model and of the
quantized one on the same text (llama-perplexity's measure, computed by llama-loglik, for GGUF: the
f16 GGUF vs the quantized GGUF;
transformers for bnb, gptq and awq: the source model vs the quantized one) and writes both, their ratio
and the sizes on disk to quantize.json beside the model and as metrics.

Everything that can be refused is refused before any conversion: an architecture the format does not
support, weights that are not float (an already quantized model), pickle-only weights, a type that
does not belong to the format, a missing calibration input.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from anneal_worker.datasets import iter_checked_rows
from anneal_worker.protocol import Worker, config_from_params, fail
from anneal_worker.training import check, check_choices, check_positive, choice, limit_cpu_threads, model_dir_input

WHO = "quantize"

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_K", "q5_K_M", "q5_K_S", "q5_0", "q4_K_M", "q4_K_S", "q4_0", "q3_K_M", "q2_K")
BNB_TYPES = ("nf4", "fp4", "int8")
GPTQ_TYPES = ("w4a16", "w8a16")
AWQ_TYPES = ("w4a16", "w8a16")
TYPES = {"gguf": GGUF_TYPES, "bnb": BNB_TYPES, "gptq": GPTQ_TYPES, "awq": AWQ_TYPES}
DEFAULT_TYPE = {"gguf": "q4_K_M", "bnb": "nf4", "gptq": "w4a16", "awq": "w4a16"}
# the formats calibrated on the `calibration` input (llm-compressor)
CALIBRATED = ("gptq", "awq")
# the converter's own types; everything else is an f16 conversion followed by llama-quantize
CONVERTER_TYPES = ("f32", "f16", "bf16")

# Architectures each format is tested with here (and the ones llama.cpp converts with the same
# code path: Mistral and Qwen2 go through the Llama and Qwen converters unchanged).
GGUF_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM")
FLOAT_DTYPES = ("F32", "F16", "BF16")


@dataclass
class QuantizeConfig:
    # gguf (llama.cpp), bnb (bitsandbytes via transformers), gptq or awq (llm-compressor)
    format: str = choice("gguf", tuple(TYPES))
    # the quantization type; null: the format's default (gguf q4_K_M, bnb nf4, gptq and awq w4a16)
    type: str | None = None
    # bnb 4-bit: quantize the quantization constants too (QLoRA's double quantization)
    double_quant: bool = True
    # gptq, awq: calibration rows used (from the `calibration` input) and their length in tokens
    calibration_samples: int = 128
    calibration_seq_length: int = 512
    # gptq, awq: columns sharing one scale (-1: one scale per output channel)
    group_size: int = 128
    # perplexity on `heldOut`: context window in tokens (each chunk is scored on its second half)
    perplexity_ctx: int = 128
    allow_pickle: bool = False
    # part of the key; the calibration order (gptq, awq) and nothing else depends on it
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(WHO, self)
        check_positive(WHO, self, "calibration_samples", "calibration_seq_length", "perplexity_ctx")
        if self.type is None:
            self.type = DEFAULT_TYPE[self.format]
        check(self.type in TYPES[self.format],
              f"{WHO}: param type: {self.type!r} is not a {self.format} type (one of {', '.join(TYPES[self.format])})")
        check(self.group_size == -1 or self.group_size > 0, f"{WHO}: param groupSize must be -1 or positive, got {self.group_size}")
        check(self.perplexity_ctx >= 16, f"{WHO}: param perplexityCtx must be >= 16, got {self.perplexity_ctx}")


# ---------------------------------------------------------------------------------------------
# checks that need no library: config.json and the safetensors headers


def read_config(model_dir: str) -> dict:
    try:
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{WHO}: input 'model': cannot read {model_dir}/config.json: {e}")
        raise


def safetensors_dtypes(model_dir: str) -> dict[str, str]:
    """tensor name -> dtype, from the headers of every *.safetensors file (8-byte length + JSON)."""
    found: dict[str, str] = {}
    for name in sorted(os.listdir(model_dir)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(model_dir, name)
        try:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                check(n < 100_000_000, f"{WHO}: input 'model': {path}: safetensors header of {n} bytes is not plausible")
                header = json.loads(f.read(n))
        except (OSError, ValueError, struct.error) as e:
            fail(f"{WHO}: input 'model': {path} is not a safetensors file ({e})")
            raise
        for tensor, info in header.items():
            if tensor != "__metadata__":
                found[tensor] = info.get("dtype", "?")
    return found


def check_model(model_dir: str, cfg: QuantizeConfig, on_gpu: bool) -> tuple[str, str]:
    """Refuses what this format cannot quantize; returns (architecture, source dtype)."""
    config = read_config(model_dir)
    archs = config.get("architectures") or []
    arch = archs[0] if archs else "(none: config.json has no architectures)"
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        fail(f"{WHO}: input 'model': {model_dir} is already quantized ({method}); quantize a full-precision model")
    dtypes = safetensors_dtypes(model_dir)
    odd = sorted({d for d in dtypes.values() if d not in FLOAT_DTYPES})
    if odd:
        example = next(t for t, d in dtypes.items() if d in odd)
        fail(f"{WHO}: input 'model': unsupported weight dtype {', '.join(odd)} (e.g. {example}); "
             f"quantize takes {', '.join(FLOAT_DTYPES)} weights")
    if cfg.format == "gguf":
        if arch not in GGUF_ARCHITECTURES:
            fail(f"{WHO}: input 'model': architecture {arch} is not supported for GGUF here "
                 f"(supported: {', '.join(GGUF_ARCHITECTURES)})")
    elif not arch.endswith("ForCausalLM"):
        fail(f"{WHO}: input 'model': architecture {arch} is not a causal LM (*ForCausalLM); format {cfg.format} needs one")
    if cfg.format in CALIBRATED and cfg.group_size > 0:
        widths = {k: config.get(k) for k in ("hidden_size", "intermediate_size") if isinstance(config.get(k), int)}
        odd_widths = {k: v for k, v in widths.items() if v % cfg.group_size}
        if odd_widths:
            fail(f"{WHO}: input 'model': format {cfg.format} with groupSize {cfg.group_size} needs layer widths divisible "
                 "by it; " + ", ".join(f"{k} is {v}" for k, v in odd_widths.items()) + " (use a divisor, or -1)")
    if cfg.format == "bnb" and cfg.type != "int8" and not on_gpu:
        # bitsandbytes' CPU 4-bit path packs 64-value blocks of each input row: other widths quantize,
        # then fail in the first forward pass ("shape '[32, 0]' is invalid")
        widths = {k: config.get(k) for k in ("hidden_size", "intermediate_size") if isinstance(config.get(k), int)}
        odd_widths = {k: v for k, v in widths.items() if v % 64}
        if odd_widths:
            fail(f"{WHO}: input 'model': bitsandbytes 4-bit on CPU needs layer widths divisible by 64; "
                 + ", ".join(f"{k} is {v}" for k, v in odd_widths.items()) + " (use int8, or a GPU)")
    source_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}.get(
        max(set(dtypes.values()) or {"F32"}, key=list(dtypes.values()).count), "float32")
    return arch, source_dtype


def text_rows(worker: Worker, port: str) -> list[str]:
    path = worker.inputs.get(port)
    if not path:
        return []
    rows = [row["text"] for _, row in iter_checked_rows(path, ("text",), f"{WHO}: input '{port}'")]
    return [t for t in rows if t.strip()]


def dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def weights_size(model_dir: str) -> int:
    return sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir) if f.endswith(".safetensors"))


def run_tool(worker: Worker, argv: list[str], what: str, env: dict | None = None) -> str:
    """Runs a llama.cpp program (an argument array), returns its output; a failure ends the step."""
    worker.log(f"{WHO}: {what}: {' '.join(argv)}", level="debug")
    # its output goes to a temporary file, read back for the tail a failure shows (nothing is parsed)
    import tempfile

    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        r = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.seek(0)
        out = log.read()
    if r.returncode != 0:
        tail = "\n".join(out.splitlines()[-12:])
        fail(f"{WHO}: {what} failed (exit {r.returncode}):\n{tail}", code=1)
    return out


# ---------------------------------------------------------------------------------------------
# GGUF


def llama_cpp() -> dict[str, str]:
    paths = {k: os.environ.get(f"ANNEAL_LLAMA_CPP_{k.upper()}", "") for k in ("src", "quantize")}
    paths["loglik"] = os.environ.get("ANNEAL_LLAMA_LOGLIK", "")
    missing = [k for k, v in paths.items() if not v or not os.path.exists(v)]
    if missing:
        fail(f"{WHO}: llama.cpp is not built on this machine: run `npx anneal setup --with llama-cpp`", code=2)
    return paths


def gguf_perplexity(worker: Worker, tools: dict[str, str], gguf: str, text: str, ctx: int, threads: int) -> float:
    """llama-perplexity's measure, answered by anneal's llama-loglik (the same llama.cpp libraries) as a
    JSON line: llama-perplexity itself logs through a thread that is not drained at exit, so its final
    estimate is sometimes missing from its output (seen in CI, three runs in a row)."""
    argv = [tools["loglik"], gguf, "--ctx", str(ctx), "--batch", str(ctx), "--threads", str(threads)]
    worker.log(f"{WHO}: perplexity: {' '.join(argv)}", level="debug")
    r = subprocess.run(argv, input=json.dumps({"op": "perplexity", "text": text, "ctx": ctx}) + "\n", capture_output=True,
                       text=True, encoding="utf-8", errors="replace")
    name = os.path.basename(gguf)
    if r.returncode != 0:
        fail(f"{WHO}: llama-loglik could not load {name} (exit {r.returncode}): {r.stderr.strip()[-500:]}", code=1)
    try:
        reply = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        fail(f"{WHO}: llama-loglik gave no answer for the perplexity of {name}: {r.stdout[-300:]!r}", code=1)
    if "error" in reply:
        fail(f"{WHO}: input 'heldOut': perplexity of {name}: {reply['error']} (lower perplexityCtx or give more text)", code=2)
    return float(reply["ppl"])


def quantize_gguf(worker: Worker, cfg: QuantizeConfig, model_dir: str, held_out: list[str], threads: int) -> dict:
    tools = llama_cpp()
    work = os.path.join(worker.resume_dir, "gguf")
    os.makedirs(work, exist_ok=True)
    base_type = cfg.type if cfg.type in CONVERTER_TYPES else "f16"
    base = os.path.join(work, f"model-{base_type}.gguf")
    worker.phase(f"converting to GGUF {base_type}")
    if not os.path.exists(base):
        partial = base + ".partial"
        convert = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert.py")
        run_tool(worker, [sys.executable, convert, tools["src"], "--", model_dir, "--outfile", partial,
                          "--outtype", base_type], "llama.cpp's convert_hf_to_gguf.py")
        os.replace(partial, base)
    target = os.path.join(worker.output, "model.gguf")
    if cfg.type in CONVERTER_TYPES:
        shutil.copyfile(base, target)
    else:
        worker.phase(f"llama-quantize {cfg.type}")
        run_tool(worker, [tools["quantize"], base, target, cfg.type.upper(), str(threads)],
                 f"llama-quantize {cfg.type}")
    report: dict = {"reference": f"gguf {base_type}", "size_bytes": {"reference": dir_size(base), "quantized": dir_size(target)}}
    if held_out:
        worker.phase("perplexity")
        text = "\n\n".join(held_out)
        ref = gguf_perplexity(worker, tools, base, text, cfg.perplexity_ctx, threads)
        quant = ref if cfg.type in CONVERTER_TYPES else gguf_perplexity(worker, tools, target, text, cfg.perplexity_ctx, threads)
        report["perplexity"] = {"reference": ref, "quantized": quant, "ratio": quant / ref, "ctx": cfg.perplexity_ctx,
                                "tool": "llama.cpp (llama-perplexity's measure)"}
    return report


# ---------------------------------------------------------------------------------------------
# transformers: bitsandbytes and GPTQ


def copy_tokenizer(model_dir: str, out: str) -> None:
    for name in os.listdir(model_dir):
        if name.startswith(("tokenizer", "special_tokens_map", "chat_template", "vocab", "merges")) and not os.path.exists(os.path.join(out, name)):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(out, name))


def hf_perplexity(model, tokenizer, texts: list[str], ctx: int) -> float:
    """Perplexity the way llama-perplexity computes it: the text as one token stream cut into chunks of
    `ctx` tokens, each scored on its second half (the first half is context)."""
    import torch

    ids = tokenizer("\n\n".join(texts), add_special_tokens=False, return_tensors="pt").input_ids[0]
    chunks = len(ids) // ctx
    check(chunks >= 1, f"{WHO}: input 'heldOut' has {len(ids)} tokens, fewer than perplexityCtx {ctx}")
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    with torch.no_grad():
        for c in range(chunks):
            chunk = ids[c * ctx:(c + 1) * ctx].unsqueeze(0).to(device)
            logits = model(chunk).logits.float()[0]
            first = ctx // 2
            logp = torch.log_softmax(logits[first - 1:ctx - 1], dim=-1)
            nll -= logp.gather(1, chunk[0, first:].unsqueeze(1)).sum().item()
            count += ctx - first
    return math.exp(nll / count)


def quantize_transformers(worker: Worker, cfg: QuantizeConfig, model_dir: str, source_dtype: str,
                          held_out: list[str], calibration: list[str]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    on_gpu = bool(worker.gpus) and torch.cuda.is_available()
    device = "cuda:0" if on_gpu else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    reference_ppl = None
    if held_out:
        worker.phase("perplexity of the source model")
        ref_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32).to(device)
        reference_ppl = hf_perplexity(ref_model, tokenizer, held_out, cfg.perplexity_ctx)
        del ref_model

    if cfg.format == "bnb":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if on_gpu else torch.float32
        if cfg.type == "int8":
            qconfig = BitsAndBytesConfig(load_in_8bit=True)
        else:
            qconfig = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.type,
                                         bnb_4bit_use_double_quant=cfg.double_quant, bnb_4bit_compute_dtype=compute)
        worker.phase(f"bitsandbytes {cfg.type}")
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=qconfig, device_map=device,
                                                     dtype=compute)
    else:
        from datasets import Dataset
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
        import random

        check(bool(calibration), f"{WHO}: format {cfg.format} needs the 'calibration' input (text rows)")
        worker.phase(f"{cfg.format.upper()} calibration")
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32)
        rows = list(calibration)
        random.Random(cfg.seed).shuffle(rows)
        rows = rows[:cfg.calibration_samples]
        ds = Dataset.from_dict({"text": rows}).map(
            lambda r: tokenizer(r["text"], truncation=True, max_length=cfg.calibration_seq_length, add_special_tokens=False),
            remove_columns=["text"])
        from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

        bits = 4 if cfg.type == "w4a16" else 8
        weights = QuantizationArgs(num_bits=bits, type="int", symmetric=True,
                                   strategy="channel" if cfg.group_size == -1 else "group",
                                   group_size=None if cfg.group_size == -1 else cfg.group_size)
        groups = {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}
        if cfg.format == "gptq":
            recipe = GPTQModifier(config_groups=groups, ignore=["lm_head"])
        else:
            from llmcompressor.modifiers.transform.awq import AWQModifier

            if not torch.cuda.is_available():
                # AWQ's smoothing pins its cached activations for faster host-to-GPU copies, always;
                # pin_memory needs a CUDA driver. On CPU there is no copy to speed up: skip the pinning.
                from llmcompressor.pipelines.cache import IntermediatesCache

                IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
            recipe = [AWQModifier(duo_scaling=True), QuantizationModifier(config_groups=groups, ignore=["lm_head"])]
        oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=cfg.calibration_seq_length,
                num_calibration_samples=len(rows))

    worker.phase("saving")
    if cfg.format in CALIBRATED:
        model.save_pretrained(worker.output, save_compressed=True)
    else:
        model.save_pretrained(worker.output)
    copy_tokenizer(model_dir, worker.output)
    for stray in ("recipe.yaml",):
        # llm-compressor's record of the modifier; the quantization_config in config.json is what loads
        if os.path.exists(os.path.join(worker.output, stray)):
            os.replace(os.path.join(worker.output, stray), os.path.join(worker.resume_dir, stray))
    report: dict = {"reference": f"source ({source_dtype})",
                    "size_bytes": {"reference": weights_size(model_dir), "quantized": weights_size(worker.output)}}
    if held_out:
        worker.phase("perplexity of the quantized model")
        del model
        reloaded = AutoModelForCausalLM.from_pretrained(worker.output, device_map=device)
        quant = hf_perplexity(reloaded, tokenizer, held_out, cfg.perplexity_ctx)
        report["perplexity"] = {"reference": reference_ppl, "quantized": quant, "ratio": quant / reference_ppl,
                                "ctx": cfg.perplexity_ctx, "tool": "transformers"}
    return report


def main() -> None:
    worker = Worker.from_argv()
    cfg = config_from_params(QuantizeConfig, worker.params)

    # --- validate inputs before touching a device ---
    model_dir = model_dir_input(f"{WHO}: input 'model'", worker.inputs.get("model"), cfg.allow_pickle)
    check(any(n.endswith(".safetensors") for n in os.listdir(model_dir)),
          f"{WHO}: input 'model': {model_dir} has no safetensors weights")
    # the engine sets CUDA_VISIBLE_DEVICES to the GPUs it assigned; none assigned means CPU
    on_gpu = bool(worker.gpus) and os.environ.get("CUDA_VISIBLE_DEVICES", "") != ""
    arch, source_dtype = check_model(model_dir, cfg, on_gpu)
    held_out = text_rows(worker, "heldOut")
    calibration = text_rows(worker, "calibration")
    if cfg.format in CALIBRATED:
        check(bool(calibration), f"{WHO}: format {cfg.format} needs the 'calibration' input (a dataset of text rows)")
    threads = max(1, int(worker.spec.get("devices", {}).get("cpus", 0) or 0) or len(os.sched_getaffinity(0)))
    if cfg.format == "awq":
        # AWQ scales each layer against the one before it: llm-compressor knows those pairs per
        # architecture, and would guess Llama's names for any other
        from llmcompressor.modifiers.transform.awq import AWQ_DYNAMIC_MAPPING_REGISTRY, AWQ_MAPPING_REGISTRY

        known = sorted(set(AWQ_MAPPING_REGISTRY) | set(AWQ_DYNAMIC_MAPPING_REGISTRY))
        check(arch in known, f"{WHO}: input 'model': architecture {arch} has no AWQ layer mapping in llm-compressor "
                             f"(known: {', '.join(a for a in known if a.endswith('ForCausalLM'))})")

    started = time.monotonic()
    if cfg.format == "gguf":
        report = quantize_gguf(worker, cfg, model_dir, held_out, threads)
    else:
        limit_cpu_threads(worker)
        report = quantize_transformers(worker, cfg, model_dir, source_dtype, held_out, calibration)

    report = {"format": cfg.format, "type": cfg.type, "architecture": arch, "source_dtype": source_dtype,
              "seconds": round(time.monotonic() - started, 2), **report}
    with open(os.path.join(worker.output, "quantize.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    worker.metric("size_bytes", report["size_bytes"]["quantized"])
    worker.metric("size_ratio", report["size_bytes"]["quantized"] / max(1, report["size_bytes"]["reference"]))
    if "perplexity" in report:
        worker.metric("perplexity", report["perplexity"]["quantized"])
        worker.metric("perplexity_reference", report["perplexity"]["reference"])
        worker.metric("perplexity_ratio", report["perplexity"]["ratio"])


if __name__ == "__main__":
    main()
