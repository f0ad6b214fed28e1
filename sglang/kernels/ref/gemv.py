"""Torch twin of `sglang.kernels.gemv.gemv`: the unfused ops it replaces, same rounding points."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from sglang.kernels.ref.attention_math import compute_dtype


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
         norm_weight: Optional[torch.Tensor] = None, eps: float = 1e-6, silu_mul: bool = False,
         residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [1, K] @ weight[N, K]^T (+ bias) -> [1, N] in x's dtype; see the Triton version for the
    optional RMSNorm / SiLU-mul prologue and in-place residual epilogue."""
    if silu_mul and norm_weight is not None:
        raise ValueError("gemv takes one prologue: norm_weight or silu_mul, not both")
    if x.dim() != 2 or x.shape[0] != 1:
        raise ValueError(f"gemv takes one row, x of shape [1, K]; got {list(x.shape)}")
    ct = compute_dtype(x.dtype)
    a = x.to(ct)
    if silu_mul:
        gate, up = a.chunk(2, dim=-1)
        a = (F.silu(gate) * up).to(x.dtype).to(ct)  # stored by the separate kernel, so rounded
    elif norm_weight is not None:
        a = (a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps) * norm_weight.to(ct)).to(x.dtype).to(ct)
    y = F.linear(a, weight.to(ct), None if bias is None else bias.to(ct)).to(x.dtype)
    if residual is None:
        return y
    return residual.copy_((y.to(ct) + residual.to(ct)).to(residual.dtype))
