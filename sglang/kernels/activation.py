"""SiLU-and-mul for gated MLPs: [N, 2I] (gate | up) -> [N, I], one read and one write."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _silu_and_mul_kernel(X, Out, stride_x, stride_o, inter, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inter
    gate = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X + row * stride_x + inter + cols, mask=mask, other=0.0).to(tl.float32)
    out = gate * tl.sigmoid(gate) * up
    tl.store(Out + row * stride_o + cols, out.to(Out.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[..., 2I] -> [..., I]: silu(gate) * up with gate = x[..., :I] and up = x[..., I:], into `out`
    (contiguous) or a new tensor."""
    if x.shape[-1] % 2:
        raise ValueError(f"silu_and_mul needs an even last dim (gate | up), got {x.shape[-1]}")
    if x.stride(-1) != 1:
        raise ValueError(f"x must be contiguous in its last dim (strides {x.stride()}); call .contiguous()")
    inter = x.shape[-1] // 2
    x2d = x.reshape(-1, x.shape[-1])
    if out is None:
        out = torch.empty(*x.shape[:-1], inter, dtype=x.dtype, device=x.device)
    elif not out.is_contiguous() or out.shape != (*x.shape[:-1], inter):
        raise ValueError(f"out must be a contiguous {[*x.shape[:-1], inter]} tensor, got {list(out.shape)}")
    out2d = out.view(-1, inter)
    if out.numel():
        grid = (x2d.shape[0], triton.cdiv(inter, _BLOCK))
        _silu_and_mul_kernel[grid](x2d, out2d, x2d.stride(0), out2d.stride(0), inter, BLOCK=_BLOCK, num_warps=4)
    return out
