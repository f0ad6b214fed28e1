"""Mixture-of-experts families vs transformers on tiny random checkpoints (float32, CPU).

The three checks of `test_model_fidelity` (cached-prefix extend + batched decode, mixed batches,
partial log-prob rows) run here over the MoE variants through the same harness; on top, prompt
log-probs must agree to 1e-4 and a token's routing must not depend on its batch."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import KVHarness, hf_prompt_logprobs, hf_reference_model, logprobs
from tests.models.test_model_fidelity import (  # noqa: F401  (collected here over the MoE variants)
    test_mixed_batch_matches_hf,
    test_partial_logprob_rows_and_no_full_logits_by_default,
    test_prefill_with_cached_prefix_and_batched_decode,
)

__all__ = ["test_mixed_batch_matches_hf", "test_partial_logprob_rows_and_no_full_logits_by_default",
           "test_prefill_with_cached_prefix_and_batched_decode"]

TOL = 1e-4

VARIANTS = {
    "mixtral": ("mixtral", {}),
    "mixtral-sliding": ("mixtral", {"sliding_window": 8}),
    "qwen2_moe": ("qwen2_moe", {}),
    # a dense layer among sparse ones, routing weights renormalized
    "qwen2_moe-dense-layer": ("qwen2_moe", {"mlp_only_layers": [1], "norm_topk_prob": True}),
    "qwen3_moe": ("qwen3_moe", {}),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tiny_ckpt):
    arch, overrides = VARIANTS[request.param]
    path = tiny_ckpt(arch, **overrides)
    mc = ModelConfig(path)
    return load_model(mc), hf_reference_model(path), mc


def test_prompt_logprobs_within_1e4_batched_and_alone(pair):
    model, hf, mc = pair
    gen = torch.Generator().manual_seed(11)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in (3, 17, 30)]
    batched = KVHarness.for_config(model, mc)
    out = batched.extend([batched.new_request() for _ in prompts], prompts, return_logprob=True)
    rows = torch.split(out.input_logits, [len(p) for p in prompts])
    for prompt, got in zip(prompts, rows):
        ref = hf_prompt_logprobs(hf, prompt)
        assert (logprobs(got) - ref).abs().max().item() <= TOL
        alone = KVHarness.for_config(model, mc)
        one = alone.extend([alone.new_request()], [prompt], return_logprob=True).input_logits
        assert (logprobs(one) - logprobs(got)).abs().max().item() <= TOL
