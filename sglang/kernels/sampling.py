"""Top-k / top-p / min-p sampling from probabilities without any device->host sync.

Sampling uses the exponential race: for E_i ~ Exp(1) i.i.d., argmax_i p_i / E_i is distributed as
Categorical(p), and it needs no normalization. So filtering only zeroes probabilities, and the whole
path is sort / cumsum / compare / argmax on the device. No `.item()`, no boolean indexing: safe
inside CUDA graphs and under `torch.cuda.set_sync_debug_mode("error")`.

Filter semantics (the twin in `sglang.kernels.ref.sampling` spells them out per row):
- top_k <= 0 or >= vocab keeps everything; otherwise the k most probable tokens;
- top_p is applied to the top-k survivors, relative to their mass: a token is kept while the mass
  strictly before it (in descending order) is below top_p times that mass;
- min_p keeps tokens with p >= min_p * max(p);
- the most probable token always survives. Ties are broken by token id (stable sort).
"""

from __future__ import annotations

from typing import Optional

import torch

_MASK32 = 0xFFFFFFFF
# Odd multiplier below 2**31 so that a 32-bit value times it never overflows int64.
_MIX = 0x45D9F3B


def keep_mask_sorted(
    sorted_probs: torch.Tensor, top_ks: torch.Tensor, top_ps: torch.Tensor, min_ps: torch.Tensor
) -> torch.Tensor:
    """[bs, V] bool over probabilities sorted descending: which ranks survive the three filters."""
    vocab = sorted_probs.shape[-1]
    ranks = torch.arange(vocab, device=sorted_probs.device)
    k = torch.where(top_ks <= 0, vocab, top_ks.to(torch.int64))
    keep = ranks[None, :] < k[:, None]
    kept = sorted_probs * keep
    mass_before = kept.cumsum(dim=-1) - kept
    keep &= mass_before < top_ps.to(kept.dtype)[:, None] * kept.sum(dim=-1, keepdim=True)
    keep &= sorted_probs >= min_ps.to(sorted_probs.dtype)[:, None] * sorted_probs[:, :1]
    return keep | (ranks[None, :] == 0)


def top_k_top_p_min_p_sampling_from_probs(
    probs: torch.Tensor,  # [bs, V], rows need not be normalized
    top_ks: torch.Tensor,  # [bs] int
    top_ps: torch.Tensor,  # [bs] float in (0, 1]
    min_ps: torch.Tensor,  # [bs] float in [0, 1)
    exponential_noise: Optional[torch.Tensor] = None,  # [bs, V] Exp(1) draws, indexed by token id
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:  # [bs] int64 token ids
    """Sample one token per row after filtering. Pass `exponential_noise` (e.g. from
    `seeded_exponential_noise`) for reproducible draws; otherwise it is drawn on the device."""
    if exponential_noise is None:
        exponential_noise = torch.empty_like(probs, dtype=torch.float32).exponential_(generator=generator)
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True, stable=True)
    keep = keep_mask_sorted(sorted_probs, top_ks, top_ps, min_ps)
    noise = exponential_noise.gather(1, sorted_ids).to(sorted_probs.dtype).clamp_min(1e-30)  # 0/0 would be NaN
    choice = (sorted_probs.masked_fill(~keep, 0.0) / noise).argmax(dim=-1, keepdim=True)
    return sorted_ids.gather(1, choice).squeeze(1)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix carried in int64 (values stay in [0, 2**32))."""
    x = x & _MASK32
    for _ in range(2):
        x = ((x ^ (x >> 16)) * _MIX) & _MASK32
    return x ^ (x >> 16)


def seeded_exponential_noise(seeds: torch.Tensor, offsets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[bs, V] float32 Exp(1) noise that depends only on (seed, offset, token id), computed on the
    device from a counter hash: per-request seeds with no host loop and no generator state.
    Use the decode step (or output length) as the offset so each step draws fresh noise."""
    token_ids = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64)
    row = _hash32(_hash32(seeds.to(torch.int64)) ^ offsets.to(torch.int64))
    bits = _hash32(row[:, None] ^ _hash32(token_ids + 0x9E3779B)[None, :])
    return -torch.log(unit_interval(bits))


def unit_interval(bits: torch.Tensor) -> torch.Tensor:
    """32-bit values -> float32 strictly inside (0, 1). Only 23 bits are used: with 24, the top
    value (2**24 - 0.5) / 2**24 rounds to exactly 1.0 in float32, -log(U) is 0, and an exponential
    race divides by zero (a masked token's 0/0 = NaN wins argmax; ~0.8% of rows at a 128k vocab)."""
    return ((bits >> 9).to(torch.float32) + 0.5) * (1.0 / (1 << 23))
