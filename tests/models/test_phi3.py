"""Phi-3 vs transformers on tiny random checkpoints (float32, CPU): the checks of
`test_model_fidelity` over Phi-3 with and without a sliding window, prompt log-probs to 1e-4,
and the fused qkv / gate_up checkpoint tensors cut into the shared layers' parts."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.phi3 import split_fused
from tests.models.harness import KVHarness, hf_incremental_logprobs, hf_prompt_logprobs, hf_reference_model, logprobs
from tests.models.test_model_fidelity import (
    test_mixed_batch_matches_hf,
    test_partial_logprob_rows_and_no_full_logits_by_default,
    test_prefill_with_cached_prefix_and_batched_decode,
)

__all__ = ["test_mixed_batch_matches_hf", "test_partial_logprob_rows_and_no_full_logits_by_default",
           "test_prefill_with_cached_prefix_and_batched_decode"]

VARIANTS = {"phi3": {}, "phi3-sliding": {"sliding_window": 8}}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tiny_ckpt):
    path = tiny_ckpt("phi3", **VARIANTS[request.param])
    mc = ModelConfig(path)
    return load_model(mc), hf_reference_model(path), mc


def test_prompt_logprobs_within_1e4(pair):
    model, hf, mc = pair
    prompt = torch.randint(0, mc.vocab_size, (29,), generator=torch.Generator().manual_seed(5)).tolist()
    h = KVHarness.for_config(model, mc)
    got = h.extend([h.new_request()], [prompt], return_logprob=True).input_logits
    assert (logprobs(got) - hf_prompt_logprobs(hf, prompt)).abs().max().item() <= 1e-4


def test_fused_tensors_are_cut_in_checkpoint_order(tiny_ckpt):
    mc = ModelConfig(tiny_ckpt("phi3"))
    cfg = mc.hf_config  # 4 heads, 2 kv heads of 16: q 64 rows, k and v 32 each
    qkv = torch.arange(128 * 2, dtype=torch.float32).view(128, 2)
    gate_up = torch.arange(256 * 2, dtype=torch.float32).view(256, 2)
    out = dict(split_fused([("m.self_attn.qkv_proj.weight", qkv), ("m.mlp.gate_up_proj.weight", gate_up),
                            ("m.norm.weight", torch.ones(2))], cfg))
    assert sorted(out) == ["m.mlp.gate_proj.weight", "m.mlp.up_proj.weight", "m.norm.weight",
                           "m.self_attn.k_proj.weight", "m.self_attn.q_proj.weight", "m.self_attn.v_proj.weight"]
    assert torch.equal(out["m.self_attn.k_proj.weight"], qkv[64:96])
    assert torch.equal(out["m.self_attn.v_proj.weight"], qkv[96:])
    assert torch.equal(out["m.mlp.up_proj.weight"], gate_up[128:])
    with pytest.raises(ValueError, match="has 100 rows; the config implies 64 \\+ 32 \\+ 32"):
        list(split_fused([("m.self_attn.qkv_proj.weight", torch.zeros(100, 2))], cfg))


LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 32,
            "short_factor": [1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 4.0, 6.0],
            "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0, 14.0, 20.0]}


@pytest.fixture(scope="module")
def longrope(tiny_ckpt):
    path = tiny_ckpt("phi3", rope_parameters=LONGROPE, original_max_position_embeddings=32)
    mc = ModelConfig(path)
    return load_model(mc), hf_reference_model(path), mc


def test_longrope_decoding_past_the_original_context_matches_transformers(longrope):
    """Prompt inside the original 32 positions, decode steps crossing it: transformers switches to
    the long factors at the step whose sequence exceeds 32, as our per-position table does."""
    model, hf, mc = longrope
    prompt = torch.randint(0, mc.vocab_size, (27,), generator=torch.Generator().manual_seed(8)).tolist()
    new = torch.randint(0, mc.vocab_size, (10,), generator=torch.Generator().manual_seed(9)).tolist()
    h = KVHarness.for_config(model, mc)
    row = h.new_request()
    got = h.extend([row], [prompt], return_logprob=True).input_logits
    assert (logprobs(got) - hf_prompt_logprobs(hf, prompt)).abs().max().item() <= 1e-4
    steps = torch.stack([logprobs(h.decode([row], [tok]).next_token_logits)[0] for tok in new])
    assert (steps - hf_incremental_logprobs(hf, prompt, new)).abs().max().item() <= 1e-4


def test_longrope_long_prompt_does_not_depend_on_how_it_is_split(longrope):
    """A prompt longer than the original context (the documented divergence from transformers,
    which would rotate all of it with the long factors) gives the same logits in one extend as
    in chunks: each position's rotation depends on the position alone."""
    model, _, mc = longrope
    prompt = torch.randint(0, mc.vocab_size, (45,), generator=torch.Generator().manual_seed(10)).tolist()
    whole = KVHarness.for_config(model, mc)
    one = whole.extend([whole.new_request()], [prompt], return_logprob=True).input_logits
    parts = KVHarness.for_config(model, mc)
    row = parts.new_request()
    chunks = [parts.extend([row], [prompt[a:b]], return_logprob=True).input_logits
              for a, b in ((0, 20), (20, 33), (33, 45))]
    assert (logprobs(torch.cat(chunks)) - logprobs(one)).abs().max().item() <= 1e-5
