"""DeepSeek-V2 / V3 (latent attention + mixture of experts) vs transformers on tiny random
checkpoints (float32, CPU): the checks of `test_model_fidelity` over V2 (no q latent,
group-limited greedy routing), V3 (q latent, sigmoid grouped routing with a bias), V3 without
rope interleaving and V3 with YaRN; prompt log-probs to 1e-4 and decode steps on the compressed
cache (`MLAKVPool`: one [latent | rope key] vector per token and layer)."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.layers.mla_attention import deinterleave
from sglang.runtime.mem_cache.mla_pool import MLAKVPool
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import KVHarness, hf_incremental_logprobs, hf_prompt_logprobs, hf_reference_model, logprobs
from tests.models.test_model_fidelity import (
    test_mixed_batch_matches_hf,
    test_partial_logprob_rows_and_no_full_logits_by_default,
    test_prefill_with_cached_prefix_and_batched_decode,
)

__all__ = ["test_mixed_batch_matches_hf", "test_partial_logprob_rows_and_no_full_logits_by_default",
           "test_prefill_with_cached_prefix_and_batched_decode"]

TOL = 1e-4
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
        "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32.0, "beta_slow": 1.0}
VARIANTS = {
    "deepseek_v2": ("deepseek_v2", {}),
    "deepseek_v2-greedy": ("deepseek_v2", {"topk_method": "greedy", "n_group": 1, "topk_group": 1}),
    "deepseek_v3": ("deepseek_v3", {}),
    "deepseek_v3-no-q-latent-no-interleave": ("deepseek_v3", {"q_lora_rank": None, "rope_interleave": False}),
    "deepseek_v3-yarn": ("deepseek_v3", {"rope_parameters": YARN}),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tiny_ckpt):
    arch, overrides = VARIANTS[request.param]
    path = tiny_ckpt(arch, **overrides)
    mc = ModelConfig(path)
    return load_model(mc), hf_reference_model(path), mc


def test_config_reads_the_latent_cache_shape(pair):
    _, _, mc = pair
    assert (mc.num_key_value_heads, mc.head_dim) == (1, 32 + 8)  # kv_lora_rank + qk_rope_head_dim


def test_compressed_cache_prefill_and_decode_within_1e4(pair):
    model, hf, mc = pair
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=torch.Generator().manual_seed(n)).tolist()
               for n in (9, 26)]
    h = KVHarness.for_config(model, mc)
    h.kv_pool = MLAKVPool(4096, torch.float32, mc.head_dim, mc.num_hidden_layers, "cpu")
    assert h.kv_pool.get_value_buffer(0) is h.kv_pool.get_key_buffer(0)
    rows = [h.new_request() for _ in prompts]
    out = h.extend(rows, prompts, return_logprob=True)
    for prompt, got in zip(prompts, torch.split(out.input_logits, [len(p) for p in prompts])):
        assert (logprobs(got) - hf_prompt_logprobs(hf, prompt)).abs().max().item() <= TOL
    new = [[7, 300, 12], [41, 41, 5]]
    steps = [logprobs(h.decode(rows, [toks[t] for toks in new]).next_token_logits) for t in range(3)]
    for i, prompt in enumerate(prompts):
        ref = hf_incremental_logprobs(hf, prompt, new[i])
        assert (torch.stack([s[i] for s in steps]) - ref).abs().max().item() <= TOL


def test_latent_cache_is_a_small_fraction_of_expanded_heads():
    # DeepSeek-V3 shape: 128 heads of (128 + 64) key and 128 value dims vs 512 + 64 latent dims.
    mla = MLAKVPool.latent_bytes_per_token(512 + 64, 61, torch.bfloat16)
    mha = MLAKVPool.bytes_per_token(128, 192, 61, torch.bfloat16) * (128 + 192) // (2 * 192)
    assert mla == 576 * 61 * 2 and mha // mla == 71


def test_deinterleave_pairs():
    assert deinterleave(torch.arange(6.0)).tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_runner_pool_for_latent_attention_holds_one_vector_per_token(tiny_ckpt):
    from sglang.runtime.mem_cache.memory_pool import KVPool
    from sglang.runtime.mem_cache.mla_pool import kv_bytes_per_token, make_kv_pool

    mla, dense = ModelConfig(tiny_ckpt("deepseek_v3")), ModelConfig(tiny_ckpt("llama"))
    pool = make_kv_pool(mla, 64, torch.float32, 1, "cpu")
    assert type(pool) is MLAKVPool and pool.get_key_buffer(1).shape == (65, 1, 40)
    assert kv_bytes_per_token(mla, 1, torch.float32) == 40 * 2 * 4  # dims x layers x bytes, no value copy
    assert type(make_kv_pool(dense, 64, torch.float32, 2, "cpu")) is KVPool
    assert kv_bytes_per_token(dense, 2, torch.float32) == KVPool.bytes_per_token(2, 16, 2, torch.float32)
