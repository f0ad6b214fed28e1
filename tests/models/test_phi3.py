"""Phi-3 vs transformers on tiny random checkpoints (float32, CPU): the checks of
`test_model_fidelity` over Phi-3 with and without a sliding window, prompt log-probs to 1e-4,
and the fused qkv / gate_up checkpoint tensors cut into the shared layers' parts."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.phi3 import split_fused
from tests.models.harness import KVHarness, hf_prompt_logprobs, hf_reference_model, logprobs
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
