"""Per-row twin of `sglang.kernels.sampling.top_k_top_p_min_p_sampling_from_probs` (host loop)."""

from __future__ import annotations

from typing import Optional

import torch


def _allowed_ids(row: torch.Tensor, top_k: int, top_p: float, min_p: float) -> torch.Tensor:
    """Token ids of one row that survive top-k, then top-p (over the top-k mass), then min-p."""
    probs, ids = row.sort(descending=True, stable=True)
    if 0 < top_k < row.numel():
        probs, ids = probs[:top_k], ids[:top_k]
    mass_before = probs.cumsum(0) - probs
    keep = mass_before < top_p * probs.sum()
    keep &= probs >= min_p * probs[0]
    keep[0] = True
    return ids[keep]


def top_k_top_p_min_p_sampling_from_probs(
    probs: torch.Tensor,
    top_ks: torch.Tensor,
    top_ps: torch.Tensor,
    min_ps: torch.Tensor,
    exponential_noise: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    if exponential_noise is None:
        exponential_noise = torch.empty_like(probs, dtype=torch.float32).exponential_(generator=generator)
    out = torch.empty(probs.shape[0], dtype=torch.int64, device=probs.device)
    params = zip(top_ks.tolist(), top_ps.tolist(), min_ps.tolist())
    for i, (top_k, top_p, min_p) in enumerate(params):
        ids = _allowed_ids(probs[i], int(top_k), float(top_p), float(min_p))
        noise = exponential_noise[i, ids].to(probs.dtype).clamp_min(1e-30)
        out[i] = ids[(probs[i, ids] / noise).argmax()]
    return out
