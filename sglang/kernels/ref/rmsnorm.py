"""Torch twins of `sglang.kernels.rmsnorm`: RMSNorm and the fused residual-add + RMSNorm."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from sglang.kernels.ref.attention_math import compute_dtype


def _normalize(x: torch.Tensor, weight: torch.Tensor, eps: float, gemma: bool) -> torch.Tensor:
    ct = compute_dtype(x.dtype)
    xf = x.to(ct)
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    w = weight.to(ct)
    if gemma:  # Gemma stores the scale as an offset from 1
        w = w + 1.0
    return (xf * rstd * w).to(x.dtype)


def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, gemma: bool = False, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """x / rms(x) * weight over the last dim (weight + 1 with gemma=True), into `out` or a new tensor."""
    result = _normalize(x, weight, eps, gemma)
    return result if out is None else out.copy_(result)


def fused_add_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, gemma: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """In place: residual += x, then x = rmsnorm(residual). Returns (x, residual).

    The sum is rounded to residual's dtype before normalizing, as an unfused model would do.
    """
    summed = (x.to(compute_dtype(x.dtype)) + residual).to(residual.dtype)
    residual.copy_(summed)
    x.copy_(_normalize(summed, weight, eps, gemma))
    return x, residual
