"""RMSNorm and fused residual-add + RMSNorm: one program per row, statistics in float32.

The fused form reads x and residual once and writes both once (residual += x; x = norm(residual)),
instead of the three passes an unfused add, norm and scale would make over the activations.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl


@triton.jit
def _rmsnorm_kernel(
    X, Residual, W, Out, stride_x, stride_r, stride_o, n_cols, eps,
    BLOCK: tl.constexpr, HAS_RESIDUAL: tl.constexpr, GEMMA: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(Residual + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        # Round the sum to the residual dtype first, as an unfused model would, then normalize it.
        summed = (x + r).to(Residual.dtype.element_ty)
        tl.store(Residual + row * stride_r + cols, summed, mask=mask)
        x = summed.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / n_cols + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if GEMMA:
        w = w + 1.0
    tl.store(Out + row * stride_o + cols, (x * rstd * w).to(Out.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor, name: str) -> torch.Tensor:
    """[..., hidden] -> [rows, hidden] view (no copy, so in-place writes reach the caller's tensor)."""
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dim (strides {t.stride()}); call .contiguous()")
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError as e:
        raise ValueError(f"{name} with strides {t.stride()} cannot be viewed as rows; call .contiguous()") from e


def _launch(x2d, residual2d, weight, out2d, eps: float, gemma: bool) -> None:
    n_rows, n_cols = x2d.shape
    if weight.shape[-1] != n_cols:
        raise ValueError(f"weight has {weight.shape[-1]} elements but the hidden size is {n_cols}")
    if n_rows == 0:
        return
    block = triton.next_power_of_2(n_cols)
    num_warps = min(max(block // 256, 1), 16)  # about 8 elements per thread
    has_residual = residual2d is not None
    residual2d = residual2d if has_residual else x2d
    _rmsnorm_kernel[(n_rows,)](
        x2d, residual2d, weight, out2d, x2d.stride(0), residual2d.stride(0), out2d.stride(0), n_cols, float(eps),
        BLOCK=block, HAS_RESIDUAL=has_residual, GEMMA=gemma, num_warps=num_warps,
    )


def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, gemma: bool = False, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """x / rms(x) * weight over the last dim (weight + 1 with gemma=True), into `out` or a new tensor."""
    out = torch.empty_like(x) if out is None else out
    _launch(_rows(x, "x"), None, weight, _rows(out, "out"), eps, gemma)
    return out


def fused_add_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, gemma: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """In place: residual += x, then x = rmsnorm(residual). Returns (x, residual)."""
    if x.shape != residual.shape:
        raise ValueError(f"x {list(x.shape)} and residual {list(residual.shape)} must have the same shape")
    x2d = _rows(x, "x")
    _launch(x2d, _rows(residual, "residual"), weight, x2d, eps, gemma)
    return x, residual
