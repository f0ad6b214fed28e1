"""Batched token sampling with reproducible per-request seeds.

Draws use the exponential race: for probabilities p and independent E_t ~ Exp(1), the index
argmax_t p_t / E_t is distributed exactly as p. E_t = -log(U_t), where U_t is a counter-based hash
of (seed, step, token id) computed with vectorised integer ops. So a request's draw depends only
on its own seed, output position and probabilities: not on its batch companions, their order, the
device, or any generator state. It needs no host sync and no per-row torch.Generator loop, and the
same request sampled again at the same step (e.g. after retraction) gets the same token.

Integer arithmetic never overflows int64 (see `_mul32`), so results are identical on CPU and CUDA.
"""

from __future__ import annotations

import torch

from sglang.kernels.sampling import unit_interval
from sglang.runtime.sampling.penalties import apply_logits_processors, check_logits_shape
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # odd constant spreading small counters over 32 bits
_SEED_SALT = 0x5BD1E995


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 32-bit x and c, without int64 overflow.

    A constant >= 2**31 is replaced by c - 2**32 (same value mod 2**32, magnitude < 2**31), so
    |x * c| < 2**63 always and the low 32 bits of the exact product survive the mask."""
    signed_c = c - (1 << 32) if c >= (1 << 31) else c
    return (x * signed_c) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, "lowbias32" constants): a bijection on
    [0, 2**32) whose output bits each depend on all input bits. `x` is int64 holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_keys(seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """[bs] 32-bit keys from all 64 bits of each seed and the output position."""
    low, high = seeds & _M32, (seeds >> 32) & _M32
    key = mix32(low ^ mix32(high ^ _SEED_SALT))
    return mix32(key ^ _mul32(steps & _M32, _GOLDEN))


def uniform_noise(seeds: torch.Tensor, steps: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """U in (0, 1), float32, shape [bs, K] for token_ids [bs, K] or [1, K] (broadcast)."""
    return unit_interval(mix32(row_keys(seeds, steps)[:, None] ^ token_ids))


def exponential_race(weights: torch.Tensor, token_ids: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Sample one token per row with probability proportional to `weights` (unnormalised, >= 0).

    `token_ids[r, j]` is the vocabulary id of column j (the hash is keyed by it, so sorted and
    unsorted layouts draw the same token); a [1, K] tensor is broadcast over rows."""
    exp_noise = -torch.log(uniform_noise(info.seeds, info.steps, token_ids))
    winner = (weights / exp_noise).argmax(dim=-1, keepdim=True)
    return token_ids.expand(weights.shape[0], -1).gather(1, winner).squeeze(1)


def sorted_keep_mask(sorted_probs: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Which columns of descending-sorted probabilities survive top-k, top-p and min-p.

    Each filter is measured on the unfiltered distribution and the results intersect. Column 0
    (the most likely token) always survives: top_k >= 1, its preceding mass 0 < top_p, and
    min_p <= 1."""
    columns = torch.arange(sorted_probs.shape[1], device=sorted_probs.device)
    keep = columns[None, :] < info.top_ks[:, None]
    if info.need_top_p:
        # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it
        # has not reached top_p yet.
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        keep &= mass_before < info.top_ps[:, None]
    if info.need_min_p:
        keep &= sorted_probs >= info.min_ps[:, None] * sorted_probs[:, :1]
    return keep


def sample_from_probs(probs: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Filtered sampling for every row (greedy rows are overridden by the caller)."""
    if info.need_top_p or info.need_top_k:
        if info.need_top_p:
            sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        else:
            # Without top-p only the first max_top_k candidates can survive: skip the full sort.
            sorted_probs, sorted_ids = probs.topk(info.max_top_k, dim=-1)
        weights = sorted_probs * sorted_keep_mask(sorted_probs, info)
        return exponential_race(weights, sorted_ids, info)
    if info.need_min_p:
        threshold = info.min_ps[:, None] * probs.amax(dim=-1, keepdim=True)
        probs = probs.masked_fill(probs < threshold, 0.0)
    token_ids = torch.arange(probs.shape[1], device=probs.device)[None, :]
    return exponential_race(probs, token_ids, info)


class Sampler:
    """Stateless: everything per request lives in SamplingBatchInfo."""

    def sample(self, logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
        """Return [bs] int64 token ids. `logits` ([bs, V], raw model output) is left untouched,
        because output logprobs are computed from it afterwards."""
        check_logits_shape(logits, info)
        if info.batch_size == 0:
            return torch.empty((0,), dtype=torch.int64, device=logits.device)
        raw = logits
        logits = logits.float()  # no copy when already float32
        if info.needs_logits_processing:
            if logits is raw:
                logits = logits.clone()  # the processors work in place; keep the caller's raw copy
            apply_logits_processors(logits, info)
        greedy_ids = logits.argmax(dim=-1)
        if info.is_all_greedy:
            return greedy_ids
        probs = torch.softmax(logits / info.temperatures[:, None], dim=-1)
        sampled_ids = sample_from_probs(probs, info)
        return torch.where(info.greedy_mask, greedy_ids, sampled_ids)
