"""Sampling on the GPU: same tokens as the per-row twin for the same noise, and no host syncs."""

import pytest
import torch

from sglang.kernels.ref.sampling import top_k_top_p_min_p_sampling_from_probs as sample_ref
from sglang.kernels.sampling import seeded_exponential_noise, top_k_top_p_min_p_sampling_from_probs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _params(bs: int, vocab: int, dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(bs, vocab, generator=gen, dtype=torch.float64), -1).to(dtype)
    top_ks = torch.randint(-1, 60, (bs,), generator=gen)
    top_ps = 0.2 + 0.8 * torch.rand(bs, generator=gen, dtype=torch.float64)
    min_ps = 0.3 * torch.rand(bs, generator=gen, dtype=torch.float64)
    min_ps[::3] = 0.0
    top_ps[::4] = 1.0
    return [t.cuda() for t in (probs, top_ks, top_ps, min_ps)]


def test_matches_twin_for_the_same_noise():
    # float64 so that cumsum rounding cannot move a top-p boundary between the two versions
    probs, top_ks, top_ps, min_ps = _params(96, 3000, torch.float64, seed=0)
    noise = torch.empty_like(probs).exponential_()
    got = top_k_top_p_min_p_sampling_from_probs(probs, top_ks, top_ps, min_ps, noise)
    want = sample_ref(probs.cpu(), top_ks.cpu(), top_ps.cpu(), min_ps.cpu(), noise.cpu())
    assert torch.equal(got.cpu(), want)
    assert len(set(got.tolist())) > 10, "draws should differ across rows"


def test_no_host_sync_bf16_probs():
    probs, top_ks, top_ps, min_ps = _params(64, 32000, torch.bfloat16, seed=1)
    seeds = torch.arange(64, device="cuda") * 7919
    offsets = torch.full((64,), 3, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        noise = seeded_exponential_noise(seeds, offsets, probs.shape[1])
        seeded = top_k_top_p_min_p_sampling_from_probs(probs, top_ks, top_ps, min_ps, noise)
        unseeded = top_k_top_p_min_p_sampling_from_probs(probs, top_ks, top_ps, min_ps)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for ids in (seeded, unseeded):
        assert ids.shape == (64,) and ids.dtype == torch.int64
        assert ((ids >= 0) & (ids < probs.shape[1])).all()
    # top_k == 1 rows must take the argmax
    ones = top_ks.cpu() == 1
    if ones.any():
        assert torch.equal(seeded.cpu()[ones], probs.float().argmax(-1).cpu()[ones])


def test_seeded_noise_is_reproducible_on_device():
    seeds = torch.tensor([1, 2, 1], device="cuda")
    offsets = torch.tensor([0, 0, 5], device="cuda")
    a = seeded_exponential_noise(seeds, offsets, 50000)
    b = seeded_exponential_noise(seeds.cpu(), offsets.cpu(), 50000)
    assert torch.allclose(a.cpu(), b, rtol=1e-6), "device and host noise must agree for the same seeds"
    assert not torch.equal(a[0], a[2]), "a new offset must give new noise"
    assert abs(a.mean().item() - 1.0) < 0.02  # Exp(1) has mean 1
