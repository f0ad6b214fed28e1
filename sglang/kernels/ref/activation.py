"""Torch twin of `sglang.kernels.activation.silu_and_mul`."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from sglang.kernels.ref.attention_math import compute_dtype


def silu_and_mul(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[..., 2I] -> [..., I]: silu(gate) * up with gate = x[..., :I] and up = x[..., I:], into `out`
    or a new tensor."""
    if x.shape[-1] % 2:
        raise ValueError(f"silu_and_mul needs an even last dim (gate | up), got {x.shape[-1]}")
    ct = compute_dtype(x.dtype)
    gate, up = x.to(ct).chunk(2, dim=-1)
    result = (F.silu(gate) * up).to(x.dtype)
    return result if out is None else out.copy_(result)
