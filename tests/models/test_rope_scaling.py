"""Rope-scaling variants: a tiny Llama per variant, our logits vs transformers'."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang.runtime.layers.rotary_embedding import (
    apply_rotary_ref,
    get_rope,
    rope_params_from_config,
)
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import (
    KVHarness,
    hf_incremental_logprobs,
    hf_prompt_logprobs,
    hf_reference_model,
    logprobs,
)

TOL = 2e-4

# (rope_parameters, max_position_embeddings, prompt length, decode steps)
VARIANTS = {
    "linear": ({"rope_type": "linear", "factor": 2.0}, 64, 40, 3),
    # decode walks past max_position_embeddings, where the NTK base starts to stretch
    "dynamic": ({"rope_type": "dynamic", "factor": 2.0}, 44, 40, 8),
    "yarn": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}, 64, 40, 3),
    "llama3": ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16}, 128, 40, 3),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rope_variant_matches_hf(variant, tiny_ckpt):
    params, max_pos, prompt_len, steps = VARIANTS[variant]
    path = tiny_ckpt("llama", rope_parameters={**params, "rope_theta": 10000.0},
                     max_position_embeddings=max_pos)
    mc = ModelConfig(path)
    model = load_model(mc)
    assert model.model.layers[0].self_attn.rotary_emb.rope_type == params["rope_type"]
    hf = hf_reference_model(path)
    gen = torch.Generator().manual_seed(5)
    prompt = torch.randint(0, mc.vocab_size, (prompt_len,), generator=gen).tolist()
    new = torch.randint(0, mc.vocab_size, (steps,), generator=gen).tolist()

    h = KVHarness.for_config(model, mc)
    row = h.new_request()
    out = h.extend([row], [prompt], return_logprob=True)
    assert (logprobs(out.input_logits) - hf_prompt_logprobs(hf, prompt)).abs().max().item() < TOL
    ours = torch.cat([logprobs(h.decode([row], [t]).next_token_logits) for t in new])
    assert (ours - hf_incremental_logprobs(hf, prompt, new)).abs().max().item() < TOL


def test_each_variant_differs_from_plain_rope():
    """Guards the test above: no variant may silently behave like unscaled rope where it matters."""
    plain = get_rope(16, 16, 256, 10000.0, None, torch.float32)
    for name, (params, max_pos, _, _) in VARIANTS.items():
        scaling = {"original_max_position_embeddings": 16, **params}
        scaled = get_rope(16, 16, max_pos, 10000.0, scaling, torch.float32)
        pos = max_pos + 3 if name == "dynamic" else 30  # dynamic only acts past max_position
        assert not torch.allclose(scaled.cos_cache[pos], plain.cos_cache[pos]), name
        if name == "dynamic":
            torch.testing.assert_close(scaled.cos_cache[: max_pos], plain.cos_cache[: max_pos])


def test_rope_params_from_legacy_and_v5_configs():
    legacy = SimpleNamespace(rope_theta=5e5, rope_scaling={"type": "linear", "factor": 4.0},
                             max_position_embeddings=128)
    assert rope_params_from_config(legacy) == (5e5, {"type": "linear", "factor": 4.0, "rope_type": "linear"})
    v5 = SimpleNamespace(rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0},
                         max_position_embeddings=64)
    theta, scaling = rope_params_from_config(v5)
    assert theta == 1e6 and scaling["rope_type"] == "yarn"
    assert scaling["original_max_position_embeddings"] == 64  # filled in as transformers does
    assert rope_params_from_config(SimpleNamespace(rope_parameters={"rope_type": "default",
                                                                    "rope_theta": 7.0})) == (7.0, None)
    assert rope_params_from_config(SimpleNamespace()) == (10000.0, None)


def test_unsupported_rope_type_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported rope scaling type 'made_up'"):
        get_rope(16, 16, 32, 10000.0, {"rope_type": "made_up", "factor": 2.0})
    with pytest.raises(ValueError, match="longrope needs short_factor and long_factor of 8 values"):
        get_rope(16, 16, 32, 10000.0, {"rope_type": "longrope", "factor": 2.0, "short_factor": [1.0] * 8,
                                       "original_max_position_embeddings": 16})


def _rotate_half_reference(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos_full + rotated * sin_full


def test_apply_rotary_matches_rotate_half_and_keeps_tail_dims():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 16, generator=gen)
    angles = torch.randn(5, 4, generator=gen)  # rotary_dim 8 of head 16
    out = apply_rotary_ref(x, angles.cos(), angles.sin())
    full = torch.cat((angles, angles), dim=-1)[:, None, :]
    expected = _rotate_half_reference(x[..., :8], full.cos(), full.sin())
    torch.testing.assert_close(out[..., :8], expected)
    assert torch.equal(out[..., 8:], x[..., 8:])


def test_rotary_is_relative_and_capacity_grows():
    rope = get_rope(8, 8, 16, 10000.0, None, torch.float32)
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 8, generator=gen), torch.randn(1, 8, generator=gen)

    def score(pq: int, pk: int) -> float:
        rq, _ = rope(torch.tensor([pq]), q, q)
        _, rk = rope(torch.tensor([pk]), k, k)
        return float((rq * rk).sum())

    assert abs(score(5, 2) - score(13, 10)) < 1e-4  # depends only on the distance
    assert abs(score(5, 2) - score(5, 3)) > 1e-4
    rope.ensure_capacity(40)
    assert rope.cos_cache.shape[0] == 40
    assert abs(score(35, 32) - score(5, 2)) < 1e-4
