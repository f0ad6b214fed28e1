"""Single-row matmul (GEMV) with the decoder's neighbouring elementwise ops folded in.

A one-token decode step streams every weight once; cuBLAS does that well, but the step also runs
an RMSNorm before qkv and gate_up and a SiLU-mul before down in every layer, each a separate launch
of a few microseconds. This kernel takes them in:

- prologue `norm_weight`: y = W @ rmsnorm(x). Every program first sums the squares of x (one row:
  re-reading it per program costs L2 traffic only), then normalises each chunk and rounds it to x's
  dtype as the separate RMSNorm kernel would store it.
- prologue `silu_mul`: x = [gate | up], y = W @ (silu(gate) * up), the product rounded to x's dtype
  as the separate kernel would store it.
- epilogue `residual`: residual += y in place (y rounded first, then the sum rounded, as an
  unfused add would), so the next layer's norm reads the updated stream directly.

Each program owns BLOCK_N output features and walks K in BLOCK_K chunks with an elementwise float32
accumulator reduced once at the end. Block sizes come from measurements on an H200 at Llama
shapes (benchmarks/kernels/bench_gemv.py).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

_NONE, _RMSNORM, _SILU_MUL = 0, 1, 2


@triton.jit
def _gemv_kernel(X, W, Bias, NormW, Y, N, K, stride_wn, eps,
                 PROLOGUE: tl.constexpr, HAS_BIAS: tl.constexpr, ADD_RESIDUAL: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    w_rows = W + offs_n.to(tl.int64)[:, None] * stride_wn
    acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    rstd = 1.0
    if PROLOGUE == 1:  # the row's 1/rms first (x is one row, so this pass reads L2, not HBM)
        sum_sq = tl.zeros([BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            xk = tl.load(X + k0 + offs_k, mask=k0 + offs_k < K, other=0.0).to(tl.float32)
            sum_sq += xk * xk
        rstd = 1.0 / tl.sqrt(tl.sum(sum_sq, 0) / K + eps)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_mask = k < K
        w = tl.load(w_rows + k[None, :], mask=n_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        if PROLOGUE == 2:
            gate = tl.load(X + k, mask=k_mask, other=0.0).to(tl.float32)
            up = tl.load(X + K + k, mask=k_mask, other=0.0).to(tl.float32)
            a = (gate * tl.sigmoid(gate) * up).to(X.dtype.element_ty).to(tl.float32)
        else:
            a = tl.load(X + k, mask=k_mask, other=0.0).to(tl.float32)
            if PROLOGUE == 1:  # normalised and rounded as the separate RMSNorm kernel stores it
                g = tl.load(NormW + k, mask=k_mask, other=0.0).to(tl.float32)
                a = (a * rstd * g).to(X.dtype.element_ty).to(tl.float32)
        acc += w * a[None, :]
    y = tl.sum(acc, 1)
    if HAS_BIAS:
        y += tl.load(Bias + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    out_ty = Y.dtype.element_ty
    y = y.to(out_ty)
    if ADD_RESIDUAL:  # Y is the residual: each program reads and writes only its own features
        y = (y.to(tl.float32) + tl.load(Y + offs_n, mask=n_mask, other=0.0).to(tl.float32)).to(out_ty)
    tl.store(Y + offs_n, y, mask=n_mask)


def block_config(n: int, k: int) -> Tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps, num_stages) for an [n, k] weight.

    Wide outputs (gate_up, lm_head) take 16 rows x 256 columns a program; narrow ones 8 x 512
    so there are still several programs per SM. These are the best configurations per Llama-3-8B
    shape that bench_gemv.py's sweep found for its unfused prototype on an H200."""
    if n >= 16384:
        return 16, 256, 4, 4
    if n >= 6144:
        return 16, 512, 4, 2
    return 8, 512, 8, 4


def _check(x: torch.Tensor, weight: torch.Tensor, k_in: int, bias: Optional[torch.Tensor],
           norm_weight: Optional[torch.Tensor], residual: Optional[torch.Tensor]) -> None:
    if x.dim() != 2 or x.shape[0] != 1:
        raise ValueError(f"gemv takes one row, x of shape [1, K]; got {list(x.shape)} (use F.linear for more rows)")
    if weight.dim() != 2 or weight.shape[1] != k_in:
        raise ValueError(f"weight must be [N, {k_in}], got {list(weight.shape)}")
    if x.stride(1) != 1 or weight.stride(1) != 1:
        raise ValueError("gemv needs x and weight contiguous in their last dim; call .contiguous()")
    n = weight.shape[0]
    if bias is not None and (bias.shape != (n,) or not bias.is_contiguous()):
        raise ValueError(f"bias must be a contiguous [{n}] tensor, got {list(bias.shape)}")
    if norm_weight is not None and (norm_weight.shape != (k_in,) or not norm_weight.is_contiguous()):
        raise ValueError(f"norm_weight must be a contiguous [{k_in}] tensor, got {list(norm_weight.shape)}")
    if residual is not None:
        if residual.shape != (1, n) or not residual.is_contiguous() or residual.dtype != x.dtype:
            raise ValueError(f"residual must be a contiguous [1, {n}] {x.dtype} tensor, got "
                             f"{list(residual.shape)} {residual.dtype}")
        if residual.data_ptr() == x.data_ptr():
            raise ValueError("residual must not alias x: programs would read values others already updated")


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
         norm_weight: Optional[torch.Tensor] = None, eps: float = 1e-6, silu_mul: bool = False,
         residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [1, K] @ weight[N, K]^T (+ bias) -> [1, N] in x's dtype, with optional fused neighbours:

    norm_weight: x is first RMS-normalised (Llama style, `eps`) and scaled by norm_weight.
    silu_mul:    x is [1, 2K] = [gate | up] and silu(gate) * up is the operand.
    residual:    residual [1, N] += result, in place; residual is returned.
    """
    if silu_mul and norm_weight is not None:
        raise ValueError("gemv takes one prologue: norm_weight or silu_mul, not both")
    k_in = x.shape[-1] // 2 if silu_mul else x.shape[-1]
    if silu_mul and x.shape[-1] % 2:
        raise ValueError(f"silu_mul needs an even last dim (gate | up), got {x.shape[-1]}")
    _check(x, weight, k_in, bias, norm_weight, residual)
    n = weight.shape[0]
    y = residual if residual is not None else torch.empty(1, n, dtype=x.dtype, device=x.device)
    block_n, block_k, num_warps, num_stages = block_config(n, k_in)
    prologue = _SILU_MUL if silu_mul else _RMSNORM if norm_weight is not None else _NONE
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x, weight, bias if bias is not None else weight, norm_weight if norm_weight is not None else weight,
        y, n, k_in, weight.stride(0), float(eps),
        PROLOGUE=prologue, HAS_BIAS=bias is not None, ADD_RESIDUAL=residual is not None,
        BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps, num_stages=num_stages,
    )
    return y
