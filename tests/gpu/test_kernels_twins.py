"""The torch twins (the references the Triton kernels are tested against) checked on the CPU
against independent formulations: SDPA, complex multiplication, F.rms_norm, and properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.kernels.ref.activation import silu_and_mul
from sglang.kernels.ref.decode_attention import decode_attention_fwd
from sglang.kernels.ref.extend_attention import extend_attention_fwd
from sglang.kernels.ref.rmsnorm import fused_add_rmsnorm, rmsnorm
from sglang.kernels.ref.rotary import apply_rotary, build_cos_sin_cache
from sglang.kernels.ref.sampling import top_k_top_p_min_p_sampling_from_probs as sample_ref
from sglang.kernels.sampling import seeded_exponential_noise, top_k_top_p_min_p_sampling_from_probs
from tests.gpu.kernel_checks import LLAMA3_SCALING, make_paged_kv

H, KVH, D = 4, 2, 32


def _sdpa(q, k, v, visible, scale):
    """q [M, H, D], k/v [L, KVH, D] -> [M, H, D] through torch's SDPA with an explicit mask."""
    group = q.shape[1] // k.shape[1]
    k, v = (t.repeat_interleave(group, 1).transpose(0, 1) for t in (k, v))
    return F.scaled_dot_product_attention(q.transpose(0, 1), k, v, attn_mask=visible, scale=scale).transpose(0, 1)


def _extend_case(prefix_lens, ext_lens, gen, window=None, cap=0.0):
    kv = make_paged_kv(prefix_lens, KVH, D, D, torch.float64, "cpu", gen)
    n = sum(ext_lens)
    q, k, v = (torch.randn(n, h, D, generator=gen, dtype=torch.float64) for h in (H, KVH, KVH))
    ext = torch.tensor(ext_lens)
    seq = torch.tensor(prefix_lens) + ext
    start = ext.cumsum(0) - ext
    o = torch.full((n, H, D), float("nan"), dtype=torch.float64)
    extend_attention_fwd(q, k, v, o, kv.k_buffer, kv.v_buffer, kv.req_to_token, kv.req_pool_indices, seq, ext,
                         start, max(ext_lens), D**-0.5, cap, window)
    return kv, (q, k, v), o, seq, start


@pytest.mark.parametrize("window", [None, 1, 5])
def test_extend_twin_matches_sdpa_on_the_whole_sequence(window):
    gen = torch.Generator().manual_seed(0)
    prefix_lens, ext_lens = [0, 9, 4], [7, 1, 12]
    kv, (q, k, v), o, seq, start = _extend_case(prefix_lens, ext_lens, gen, window)
    for i, (p, e) in enumerate(zip(prefix_lens, ext_lens)):
        slots = kv.req_to_token[kv.req_pool_indices[i], :p].long()
        new = slice(int(start[i]), int(start[i]) + e)
        keys = torch.cat([kv.k_buffer[slots], k[new]])
        vals = torch.cat([kv.v_buffer[slots], v[new]])
        qp, kp = torch.arange(p, p + e)[:, None], torch.arange(p + e)[None, :]
        visible = (kp <= qp) & ((qp - kp < window) if window else True)
        torch.testing.assert_close(o[new], _sdpa(q[new], keys, vals, visible, D**-0.5))


def test_decode_twin_equals_extend_of_one_token():
    gen = torch.Generator().manual_seed(1)
    lens = [1, 6, 20]
    for window, cap in [(None, 0.0), (4, 0.0), (None, 2.0)]:
        kv = make_paged_kv(lens, KVH, D, D, torch.float64, "cpu", gen)
        q = torch.randn(3, H, D, generator=gen, dtype=torch.float64)
        seq = torch.tensor(lens)
        o = torch.empty(3, H, D, dtype=torch.float64)
        decode_attention_fwd(q, kv.k_buffer, kv.v_buffer, o, kv.req_to_token, kv.req_pool_indices, seq, 0.3, cap, window)
        # the same token as a one-token extend whose K/V are already the last cached entry
        last = kv.req_to_token[kv.req_pool_indices, seq - 1].long()
        o2 = torch.empty_like(o)
        ones = torch.ones(3, dtype=torch.int64)
        extend_attention_fwd(q, kv.k_buffer[last], kv.v_buffer[last], o2, kv.k_buffer, kv.v_buffer, kv.req_to_token,
                             kv.req_pool_indices, seq, ones, torch.arange(3), 1, 0.3, cap, window)
        torch.testing.assert_close(o, o2)


def test_logit_cap_bounds_the_scores():
    gen = torch.Generator().manual_seed(2)
    _, _, capped, _, _ = _extend_case([5], [6], gen, cap=0.5)
    gen = torch.Generator().manual_seed(2)
    _, _, plain, _, _ = _extend_case([5], [6], gen)
    assert not torch.allclose(capped, plain), "a small cap must change the output"
    gen = torch.Generator().manual_seed(2)
    _, _, huge_cap, _, _ = _extend_case([5], [6], gen, cap=1e6)
    torch.testing.assert_close(huge_cap, plain)


def test_decode_twin_zero_length_gives_zeros():
    gen = torch.Generator().manual_seed(3)
    kv = make_paged_kv([0, 3], KVH, D, D, torch.float32, "cpu", gen)
    o = torch.full((2, H, D), float("nan"))
    decode_attention_fwd(torch.randn(2, H, D), kv.k_buffer, kv.v_buffer, o, kv.req_to_token, kv.req_pool_indices,
                         torch.tensor([0, 3]), 0.2)
    assert (o[0] == 0).all() and torch.isfinite(o[1]).all()


@pytest.mark.parametrize("gemma", [False, True])
def test_rmsnorm_twins(gemma):
    x, r = (torch.randn(5, 64, dtype=torch.float64) for _ in range(2))
    w = torch.randn(64, dtype=torch.float64)
    w_eff = w + 1 if gemma else w
    torch.testing.assert_close(rmsnorm(x, w, 1e-6, gemma), F.rms_norm(x, (64,), w_eff, 1e-6))
    out = torch.empty_like(x)
    assert rmsnorm(x, w, 1e-6, gemma, out=out) is out
    x2, r2 = x.clone(), r.clone()
    assert fused_add_rmsnorm(x2, r2, w, 1e-6, gemma) == (x2, r2)
    torch.testing.assert_close(r2, x + r)
    torch.testing.assert_close(x2, F.rms_norm(x + r, (64,), w_eff, 1e-6))


def test_silu_and_mul_twin():
    x = torch.randn(3, 2, 10, dtype=torch.float64)
    torch.testing.assert_close(silu_and_mul(x), x[..., :5] * torch.sigmoid(x[..., :5]) * x[..., 5:])
    with pytest.raises(ValueError, match="even"):
        silu_and_mul(torch.randn(2, 3))


def test_rotary_gptj_is_complex_multiplication():
    cache = build_cos_sin_cache(16, 100, base=10000.0)
    pos = torch.tensor([0, 7, 99])
    q, k = torch.randn(3, 2 * 16, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)
    expect = torch.view_as_complex(q.view(3, 2, 8, 2).contiguous())
    angles = pos[:, None].double() * (1.0 / 10000 ** (torch.arange(0, 16, 2).double() / 16))
    expect = torch.view_as_real(expect * torch.polar(torch.ones_like(angles), angles)[:, None]).reshape(3, 32)
    apply_rotary(pos, q, k, cache.double(), 16, is_neox=False)
    torch.testing.assert_close(q, expect)


def test_llama3_cache_scales_only_low_frequencies():
    plain = build_cos_sin_cache(128, 4, base=500000.0)
    scaled = build_cos_sin_cache(128, 4, base=500000.0, rope_scaling=LLAMA3_SCALING)
    freq_plain = torch.atan2(plain[1, 64:], plain[1, :64])  # angle at position 1 = inv_freq
    freq_scaled = torch.atan2(scaled[1, 64:], scaled[1, :64])
    assert torch.allclose(freq_plain[:10], freq_scaled[:10])  # short wavelengths kept
    torch.testing.assert_close(freq_scaled[-5:], freq_plain[-5:] / 8.0)  # long ones divided by factor
    with pytest.raises(ValueError, match="not supported"):
        build_cos_sin_cache(8, 4, rope_scaling={"rope_type": "mystery"})


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(1, 300), neox=st.booleans())
def test_rotary_scores_depend_only_on_relative_position(m, n, shift, neox):
    cache = build_cos_sin_cache(32, 1000, rope_scaling=LLAMA3_SCALING, dtype=torch.float64)
    gen = torch.Generator().manual_seed(m * 1000 + n)
    q0, k0 = torch.randn(1, 32, generator=gen, dtype=torch.float64), torch.randn(1, 32, generator=gen, dtype=torch.float64)

    def score(pm, pn):
        q, k = q0.clone(), k0.clone()
        apply_rotary(torch.tensor([pm]), q, torch.empty(1, 0, dtype=torch.float64), cache, 32, neox)
        apply_rotary(torch.tensor([pn]), k, torch.empty(1, 0, dtype=torch.float64), cache, 32, neox)
        return float((q * k).sum())

    assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-9, abs_tol=1e-9)


def _probs(bs, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(bs, vocab, generator=gen, dtype=torch.float64), -1), gen


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), top_k=st.integers(-1, 40), top_p=st.floats(0.05, 1.0), min_p=st.floats(0.0, 0.9))
def test_sampling_batched_equals_twin_and_respects_filters(seed, top_k, top_p, min_p):
    probs, gen = _probs(6, 200, seed)
    ks, ps, mins = torch.full((6,), top_k), torch.full((6,), top_p, dtype=torch.float64), torch.full((6,), min_p, dtype=torch.float64)
    noise = torch.empty(6, 200, dtype=torch.float64).exponential_(generator=gen)
    got = top_k_top_p_min_p_sampling_from_probs(probs, ks, ps, mins, noise)
    assert torch.equal(got, sample_ref(probs, ks, ps, mins, noise))
    chosen = probs.gather(1, got[:, None]).squeeze(1)
    rank = (probs > chosen[:, None]).sum(1)
    if top_k > 0:
        assert (rank < top_k).all()
    assert ((chosen >= min_p * probs.max(1).values) | (rank == 0)).all()
    mass_before = (probs * (probs > chosen[:, None])).sum(1)
    assert ((mass_before < top_p) | (rank == 0)).all()


def test_sampling_frequencies_follow_the_distribution():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    draws = top_k_top_p_min_p_sampling_from_probs(
        p.expand(40000, 4), torch.zeros(40000, dtype=torch.int64), torch.ones(40000), torch.zeros(40000),
        generator=torch.Generator().manual_seed(0),
    )
    freq = torch.bincount(draws, minlength=4).double() / 40000
    torch.testing.assert_close(freq, p, atol=0.015, rtol=0)
    # top_k=2 renormalizes over the two most likely tokens: 0.5/0.8 and 0.3/0.8
    draws = top_k_top_p_min_p_sampling_from_probs(
        p.expand(40000, 4), torch.full((40000,), 2), torch.ones(40000), torch.zeros(40000),
        generator=torch.Generator().manual_seed(1),
    )
    freq = torch.bincount(draws, minlength=4).double() / 40000
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0, 0], dtype=torch.float64), atol=0.015, rtol=0)


def test_seeded_noise_is_deterministic_and_fresh_per_offset():
    seeds, offsets = torch.tensor([11, 11, 12]), torch.tensor([0, 1, 0])
    a, b = seeded_exponential_noise(seeds, offsets, 4096), seeded_exponential_noise(seeds, offsets, 4096)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[0], a[2])
    assert (a > 0).all() and torch.isfinite(a).all()
    assert abs(float(a.mean()) - 1.0) < 0.05
