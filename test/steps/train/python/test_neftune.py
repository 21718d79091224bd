"""NEFTune as the sft step applies it (transformers' activate_neftune, which the Trainer calls when
neftune_noise_alpha is set): training-mode embeddings get Uniform(-1, 1) * alpha / sqrt(L * d) noise,
fresh each forward pass; eval mode gets none."""
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.neftune import activate_neftune

ALPHA = 5.0


def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=4))


def test_noise_is_uniform_within_alpha_over_sqrt_L_d():
    model = tiny_model()
    activate_neftune(model, ALPHA)
    emb = model.get_input_embeddings()
    ids = torch.randint(0, 64, (8, 50))
    L, d = ids.shape[1], emb.weight.shape[1]
    bound = ALPHA / math.sqrt(L * d)
    model.train()
    clean = torch.nn.functional.embedding(ids, emb.weight).detach()
    noise = (emb(ids) - clean).detach()
    assert noise.abs().max() <= bound * (1 + 1e-5)
    # uniform on [-b, b]: reaches near the edges, mean 0, standard deviation b / sqrt(3)
    assert noise.abs().max() > 0.95 * bound
    assert abs(noise.mean().item()) < 0.05 * bound
    assert abs(noise.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    # fresh noise every forward pass
    again = (emb(ids) - clean).detach()
    assert not torch.equal(noise, again)


def test_the_bound_shrinks_with_sequence_length():
    model = tiny_model()
    activate_neftune(model, ALPHA)
    emb = model.get_input_embeddings()
    model.train()
    short, long = torch.randint(0, 64, (4, 10)), torch.randint(0, 64, (4, 160))
    n_short = (emb(short) - torch.nn.functional.embedding(short, emb.weight)).abs().max().item()
    n_long = (emb(long) - torch.nn.functional.embedding(long, emb.weight)).abs().max().item()
    assert n_long < n_short / 3  # sqrt(160 / 10) = 4


def test_no_noise_in_eval_mode():
    model = tiny_model()
    activate_neftune(model, ALPHA)
    emb = model.get_input_embeddings()
    ids = torch.randint(0, 64, (2, 20))
    model.eval()
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, emb.weight))
