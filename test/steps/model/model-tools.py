"""Test helper for the model-surgery tests: makes tiny random Llama models, fine-tune-like variants,
LoRA adapters, runs forward passes and compares model directories. Nothing is downloaded.

  python model-tools.py make OUT --layers 4 --hidden 32 --seed 0 [--dtype float32] [--shard-bytes N] [--tie]
  python model-tools.py perturb BASE OUT --seed 1 --noise 0.02 [--dtype float32]
  python model-tools.py lora BASE OUT --seed 2 --r 4 --alpha 8 [--rslora] [--targets gate_proj,up_proj,down_proj]
  python model-tools.py logits MODEL OUT.json [--adapter DIR]
  python model-tools.py reference-dus MODEL M OUT.json   (hand-built DUS model's logits)
  python model-tools.py compare A B                       (prints JSON: per-tensor max abs diff)
  python model-tools.py mergekit CONFIG.yml OUT [--masks MASKS.safetensors]
  python model-tools.py batch JOBS.json RESULTS.json      (runs [[cmd, args...], ...] in one process:
                                                           Python and torch start once per test file)
"""
import argparse
import json
import os
import sys

import torch


def tokenizer_files(out):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i, w in enumerate("the a of to and in is it that was for on are with as i his they be at".split()):
        vocab[w] = 3 + i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(out)


def make(a):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(a.seed)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=a.hidden, intermediate_size=a.hidden * 2, num_hidden_layers=a.layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=a.tie,
    )
    model = LlamaForCausalLM(cfg)
    # spread the weights so that merges of different models differ visibly
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model = model.to(getattr(torch, a.dtype))
    kwargs = {"max_shard_size": a.shard_bytes} if a.shard_bytes else {}
    model.save_pretrained(a.out, **kwargs)
    tokenizer_files(a.out)


def perturb(a):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32)
    g = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * a.noise)
    model.to(getattr(torch, a.dtype)).save_pretrained(a.out)
    tokenizer_files(a.out)


def lora(a):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32)
    cfg = LoraConfig(
        r=a.r, lora_alpha=a.alpha, target_modules=a.targets.split(","), use_rslora=a.rslora, lora_dropout=0.0,
        alpha_pattern=json.loads(a.alpha_pattern), rank_pattern=json.loads(a.rank_pattern),
    )
    peft = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    peft.save_pretrained(a.out)


INPUT_IDS = [[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2], [1, 12, 13, 14, 3, 15, 16, 17, 18, 19, 2]]


def logits(a):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    if a.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, a.adapter)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(INPUT_IDS)).logits
    json.dump({"logits": out.tolist(), "layers": model.config.num_hidden_layers}, open(a.out, "w"))


def reference_dus(a):
    """The DUS model built by hand: layers [0, n-m) of one copy then [m, n) of another, in torch."""
    import copy

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    n = model.config.num_hidden_layers
    m = a.m
    layers = [copy.deepcopy(model.model.layers[i]) for i in range(0, n - m)]
    layers += [copy.deepcopy(model.model.layers[i]) for i in range(m, n)]
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i
    model.model.layers = torch.nn.ModuleList(layers)
    model.config.num_hidden_layers = len(layers)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(INPUT_IDS)).logits
    json.dump({"logits": out.tolist(), "layers": len(layers)}, open(a.out, "w"))


def load_dir(d):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors") and not f.startswith("adapter"):
            out.update(load_file(os.path.join(d, f)))
    return out


def compare(a):
    x, y = load_dir(a.a), load_dir(a.b)
    report = {"only_a": sorted(set(x) - set(y)), "only_b": sorted(set(y) - set(x)), "tensors": {}}
    for k in sorted(set(x) & set(y)):
        u, v = x[k], y[k]
        entry = {"dtype_a": str(u.dtype), "dtype_b": str(v.dtype), "shape_equal": list(u.shape) == list(v.shape)}
        if entry["shape_equal"]:
            uf, vf = u.float(), v.float()
            entry["equal"] = bool(torch.equal(u, v))
            entry["max_abs"] = float((uf - vf).abs().max()) if u.numel() else 0.0
            entry["max_abs_value"] = float(uf.abs().max()) if u.numel() else 0.0
            entry["mismatched"] = int((uf != vf).sum())
            entry["numel"] = u.numel()
        report["tensors"][k] = entry
    return report


def dtypes(a):
    """all-dtypes.safetensors: one tensor per safetensors dtype (special float values included), and
    rounding.safetensors: float32 values with torch's own bf16 / f16 conversions of them."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-40, -3e-39, 65504.0, 65520.0, 1e-7, 6e-8, 3.0e38])
    f = torch.cat([torch.randn(200, generator=g) * 10, special])
    tensors = {
        "f32": f.clone(),
        "f16": f.to(torch.float16),
        "bf16": f.to(torch.bfloat16),
        "f64": f.to(torch.float64),
        "i64": torch.randint(-(2**62), 2**62, (7, 3), generator=g),
        "i32": torch.randint(-(2**31), 2**31 - 1, (5,), generator=g, dtype=torch.int64).to(torch.int32),
        "i16": torch.randint(-(2**15), 2**15 - 1, (9,), generator=g).to(torch.int16),
        "i8": torch.randint(-128, 127, (3, 3), generator=g).to(torch.int8),
        "u8": torch.randint(0, 255, (11,), generator=g).to(torch.uint8),
        "bool": torch.randint(0, 2, (13,), generator=g).to(torch.bool),
        "u16": torch.randint(0, 2**16 - 1, (4,), generator=g).to(torch.uint16),
        "u32": torch.randint(0, 2**31, (4,), generator=g).to(torch.uint32),
        "u64": torch.randint(0, 2**62, (4,), generator=g).to(torch.uint64),
        "f8e4m3": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
        "f8e5m2": torch.randn(6, generator=g).to(torch.float8_e5m2),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, os.path.join(a.out, "all-dtypes.safetensors"), metadata={"format": "pt", "note": "round trip"})
    # values on and near the rounding boundaries of bf16 and f16, plus overflow and subnormals
    bits = torch.randint(0, 2**31, (4000,), generator=g, dtype=torch.int64)
    near = (bits.to(torch.int32)).view(torch.float32)
    near = near[torch.isfinite(near)]
    ties = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 65519.0, 65520.0, 2**-25, 2**-24 * 1.5, 2**-26, 2**-14 * 1.0009765625])
    src = torch.cat([torch.randn(3000, generator=g), torch.randn(1000, generator=g) * 1e-5, near, ties, -ties, special])
    save_file({"f32": src, "bf16": src.to(torch.bfloat16), "f16": src.to(torch.float16)}, os.path.join(a.out, "rounding.safetensors"))


def mergekit(a):
    """mergekit's own run_merge on a YAML config; with --masks, DARE's random keep masks are replaced by
    fixed ones (keyed "<tensor>#<model path>") so its result can be compared exactly with anneal's."""
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    cfg = MergeConfiguration.model_validate(yaml.safe_load(open(a.config)))
    if a.masks:
        import mergekit.merge_methods.generalized_task_arithmetic as gta
        import mergekit.sparsify as sp
        from safetensors.torch import load_file

        masks = load_file(a.masks)
        state = {}
        original_group = gta.GeneralizedTaskArithmeticMerge.merge_group

        def merge_group(self, group, **params):
            state["name"] = group.metadata.name
            state["ids"] = [str(e.id) for e in group.non_base]
            state["i"] = 0
            return original_group(self, group, **params)

        def fixed_bernoulli(tensor, density, rescale_norm=None):
            if density >= 1:
                return tensor
            key = state["name"] + "#" + state["ids"][state["i"]]
            state["i"] += 1
            mask = masks[key].reshape(tensor.shape).to(torch.float32)
            return sp.rescaled_masked_tensor(tensor.to(torch.float32), mask, rescale_norm).to(tensor.dtype)

        gta.GeneralizedTaskArithmeticMerge.merge_group = merge_group
        sp.bernoulli = fixed_bernoulli
    run_merge(cfg, a.out, MergeOptions(copy_tokenizer=True, quiet=True))


def batch(a):
    jobs = json.load(open(a.jobs))
    results = [run(job) for job in jobs]
    json.dump(results, open(a.results, "w"))


def run(argv):
    a = parser().parse_args(argv)
    return COMMANDS[a.cmd](a)


def parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--hidden", type=int, default=32)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="float32")
    m.add_argument("--shard-bytes", type=int, default=0)
    m.add_argument("--tie", action="store_true")
    q = sub.add_parser("perturb")
    q.add_argument("base")
    q.add_argument("out")
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--noise", type=float, default=0.02)
    q.add_argument("--dtype", default="float32")
    lo = sub.add_parser("lora")
    lo.add_argument("base")
    lo.add_argument("out")
    lo.add_argument("--seed", type=int, default=2)
    lo.add_argument("--r", type=int, default=4)
    lo.add_argument("--alpha", type=float, default=8)
    lo.add_argument("--rslora", action="store_true")
    lo.add_argument("--targets", default="gate_proj,up_proj,down_proj")
    lo.add_argument("--alpha-pattern", default="{}")
    lo.add_argument("--rank-pattern", default="{}")
    lg = sub.add_parser("logits")
    lg.add_argument("model")
    lg.add_argument("out")
    lg.add_argument("--adapter", default="")
    r = sub.add_parser("reference-dus")
    r.add_argument("model")
    r.add_argument("m", type=int)
    r.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    mk = sub.add_parser("mergekit")
    mk.add_argument("config")
    mk.add_argument("out")
    mk.add_argument("--masks", default="")
    dt = sub.add_parser("dtypes")
    dt.add_argument("out")
    b = sub.add_parser("batch")
    b.add_argument("jobs")
    b.add_argument("results")
    return p


COMMANDS = {
    "make": make, "perturb": perturb, "lora": lora, "logits": logits, "reference-dus": reference_dus,
    "compare": compare, "mergekit": mergekit, "batch": batch, "dtypes": dtypes,
}


def main():
    out = run(sys.argv[1:])
    if out is not None:
        json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
