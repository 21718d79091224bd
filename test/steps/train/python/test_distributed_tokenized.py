"""The strategy configs a distributed run hands the Trainer (anneal_worker/distributed.py) and the
memory-mapped token shards pretrain reads (anneal_worker/tokenized.py)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from anneal_worker.distributed import check_strategy, deepspeed_config, fsdp_config, strategy_args
from anneal_worker.tokenized import read_meta, token_blocks, tokenize_to_shards


def cfg(**kw):
    base = dict(strategy="ddp", fsdp_sharding="full-shard", fsdp_auto_wrap=True, fsdp_activation_checkpointing=False,
                fsdp_cpu_offload=False, deepspeed_stage=2, deepspeed_config=None)
    return SimpleNamespace(**{**base, **kw})


def test_zero_configs_leave_batch_optimizer_and_precision_to_the_trainer():
    z2 = deepspeed_config(cfg(strategy="deepspeed"))
    assert z2["zero_optimization"]["stage"] == 2
    assert z2["train_micro_batch_size_per_gpu"] == "auto" and z2["gradient_accumulation_steps"] == "auto"
    assert "stage3_gather_16bit_weights_on_model_save" not in z2["zero_optimization"]
    z3 = deepspeed_config(cfg(strategy="deepspeed", deepspeed_stage=3))
    assert z3["zero_optimization"]["stage"] == 3
    assert z3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    json.dumps(z3)  # what the Trainer gets must be plain JSON
    mine = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}, "train_batch_size": "auto"}
    assert deepspeed_config(cfg(strategy="deepspeed", deepspeed_config=mine)) is mine


def test_deepspeed_configs_are_accepted_by_transformers_config_parser():
    # Accelerate's parser of a DeepSpeed config, which the Trainer's integration builds on (it needs neither
    # the deepspeed package nor CUDA)
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    for stage in (2, 3):
        parsed = HfDeepSpeedConfig(deepspeed_config(cfg(strategy="deepspeed", deepspeed_stage=stage)))
        assert parsed.is_zero3() == (stage == 3)


def test_fsdp_options_map_to_fsdp2():
    c = fsdp_config(cfg(strategy="fsdp"))
    assert c == {"version": 2, "reshard_after_forward": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                 "activation_checkpointing": False, "cpu_offload": False, "state_dict_type": "SHARDED_STATE_DICT"}
    c = fsdp_config(cfg(strategy="fsdp", fsdp_sharding="shard-grad-op", fsdp_auto_wrap=False,
                        fsdp_activation_checkpointing=True, fsdp_cpu_offload=True))
    assert (c["reshard_after_forward"], c["auto_wrap_policy"], c["activation_checkpointing"], c["cpu_offload"]) == \
        (False, "NO_WRAP", True, True)


class FakeWorker:
    def __init__(self, gpus):
        self.gpus = gpus
        self.logs = []

    def log(self, message, level="info"):
        self.logs.append((level, message))


def test_fsdp_on_cpu_shards_with_fsdp2(monkeypatch):
    # Accelerate enables its FSDP plugin only for GPU-type devices; on CPU the state is set to FSDP too,
    # so a CPU job with strategy fsdp is sharded, not silently DDP
    from accelerate.state import AcceleratorState

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(AcceleratorState, "__init__", AcceleratorState.__init__)  # undone after the test
    worker = FakeWorker(gpus=[])
    args = strategy_args("pretrain", cfg(strategy="fsdp"), worker)
    assert args == {"fsdp": True, "fsdp_config": fsdp_config(cfg(strategy="fsdp"))} and worker.logs == []
    assert getattr(AcceleratorState.__init__, "_anneal_fsdp_on_cpu", False)
    offload = FakeWorker(gpus=[])  # CPU offload means nothing on CPU: dropped, with a warning
    assert strategy_args("pretrain", cfg(strategy="fsdp", fsdp_cpu_offload=True), offload)["fsdp_config"]["cpu_offload"] is False
    assert offload.logs and offload.logs[0][0] == "warn" and "fsdpCpuOffload" in offload.logs[0][1]
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: nothing to shard, nothing to say
    quiet = FakeWorker(gpus=[])
    assert strategy_args("pretrain", cfg(strategy="fsdp"), quiet) == {} and quiet.logs == []


def test_deepspeed_without_cuda_fails_with_one_line(capsys):
    with pytest.raises(SystemExit):
        check_strategy("sft", cfg(strategy="deepspeed"), lora=False, worker=FakeWorker(gpus=[]))
    assert "sft: strategy deepspeed needs CUDA GPUs (none assigned here)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # GPUs assigned, but this machine has no CUDA
        strategy_args("sft", cfg(strategy="deepspeed"), FakeWorker(gpus=[0]))
    assert "sft: strategy deepspeed needs CUDA GPUs" in capsys.readouterr().err


def test_deepspeed_on_cuda_hands_the_trainer_its_config(monkeypatch):
    # what a GPU machine gets (CUDA faked: this machine has none): the ZeRO config as the Trainer's
    # `deepspeed` argument, the user's own config as it is, on one process too
    import anneal_worker.distributed as distributed

    monkeypatch.setattr(distributed, "on_gpu", lambda worker: True)
    for world in ("1", "2"):
        monkeypatch.setenv("WORLD_SIZE", world)
        assert strategy_args("sft", cfg(strategy="deepspeed", deepspeed_stage=3), FakeWorker([0])) == \
            {"deepspeed": deepspeed_config(cfg(strategy="deepspeed", deepspeed_stage=3))}
    mine = {"zero_optimization": {"stage": 2}}
    assert strategy_args("sft", cfg(strategy="deepspeed", deepspeed_config=mine), FakeWorker([0]))["deepspeed"] is mine


def test_bad_strategy_combinations_fail_with_one_line(capsys):
    with pytest.raises(SystemExit):
        check_strategy("sft", cfg(strategy="fsdp"), lora=True, worker=FakeWorker([]))
    assert "strategy fsdp with a LoRA adapter is not supported" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_strategy("pretrain", cfg(deepspeed_stage=1), lora=False, worker=FakeWorker([]))
    assert "deepspeedStage must be 2 or 3" in capsys.readouterr().err


class ByteTok:
    """A stand-in tokenizer: one id per byte, eos 255 (and an id range that needs uint16)."""
    eos_token_id = 255

    def __len__(self):
        return 256

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [list(t.encode()) for t in texts]}


def test_shards_hold_the_packed_stream_and_blocks_cross_shard_boundaries(tmp_path):
    docs = [f"doc {i} " * (i % 5 + 1) for i in range(50)]
    out = str(tmp_path / "tokens")
    meta = tokenize_to_shards(iter(docs), ByteTok(), out, shard_tokens=100)
    stream = [t for d in docs for t in list(d.encode()) + [255]]
    assert meta["tokens"] == len(stream) and meta["documents"] == 50 and meta["dtype"] == "uint16"
    assert len(meta["shards"]) == -(-len(stream) // 100)
    assert read_meta(out, "t")["tokens"] == len(stream)
    blocks, _ = token_blocks(out, 32, "t")
    assert len(blocks) == len(stream) // 32
    for i in (0, 3, len(blocks) - 1):  # block 3 spans the first shard boundary (tokens 96..127)
        assert blocks[i]["input_ids"].tolist() == stream[i * 32:(i + 1) * 32]
    assert np.array_equal(blocks[3]["labels"].numpy(), blocks[3]["input_ids"].numpy())


def test_a_failure_while_tokenizing_leaves_nothing(tmp_path):
    def texts():
        yield "fine"
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        tokenize_to_shards(texts(), ByteTok(), str(tmp_path / "tokens"))
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_shard_is_refused(tmp_path, capsys):
    out = str(tmp_path / "tokens")
    tokenize_to_shards(iter(["abc", "def"]), ByteTok(), out)
    with open(tmp_path / "tokens" / "shard-00000.bin", "r+b") as f:
        f.truncate(4)
    with pytest.raises(SystemExit):
        read_meta(out, "pretrain: input 'tokens'")
    assert "shard-00000.bin: expected 8 tokens (16 bytes), found 4 bytes" in capsys.readouterr().err
