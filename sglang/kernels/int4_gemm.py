"""INT4 weight-only products: y = x @ dequant(W)^T (+ bias).

W is in the quantization package's INT4 layout (`runtime/layers/quantization/int4_math.py`):
qweight uint8 [N, ceil(K/2)] (input k in the low nibble when even), scales float32 [N, G],
zeros uint8 [N, G], g_idx int32 [K] (the group of each input; act-order maps included). The
torch twin is `int4_linear_twin` there: the dequantized weight rounded to x's dtype, then the
matmul in x's dtype. Two kernels:

- `_gemv_kernel`, for a few rows (decode) when the groups are in input order (AWQ, GPTQ without
  act-order): each program streams BLOCK_N packed rows in chunks of GPC whole groups, loading
  one scale and zero per (row, group) rather than per element, and keeps an elementwise float32
  accumulator reduced once at the end; the grid walks the row m fastest so programs sharing a
  weight block run together and re-read it from L2. At one row this reads a quarter of the bf16
  weight bytes, which is the point of INT4 at small batch.
- `_gemm_kernel`, for more rows up to MAX_FUSED_ROWS with in-order groups (decode batches, short
  prefills): tl.dot over tiles dequantized in registers (one scale and zero per row and chunk),
  reading the packed weight once per row block.
- `_dequant_kernel`, for everything else (long prefills, act-order maps): the weight dequantized
  to x's dtype in one pass, then cuBLAS. Many rows make the product compute-bound, where the
  extra write and read of the dequantized weight are small. At a decode batch of 128 this path
  cost 130 ms a step on the Llama-3-8B shape (it writes 16 GB of bf16 weights per step).

The first version of this file did both with one tl.dot kernel gathering a scale per element;
at the Llama-3-8B shape on an H100 it took 164 ms per bs1 decode step (26x bf16).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from sglang.runtime.layers.quantization.int4_math import GemvLayout

MAX_GEMV_ROWS = 4
# Up to here the fused tl.dot kernel (reads the packed weight once); above, the product is
# compute-bound and dequantize + cuBLAS wins. A guess pending a sweep on the GPU.
MAX_FUSED_ROWS = 512


@triton.jit
def _nibble_minus_zero(q, zm):
    """(q - z) in float32 for 4-bit q in int32, with zm = 2^23 + z: q | 0x4B000000 read as a float
    is exactly 2^23 + q, so one OR and one subtraction replace a quarter-rate int-to-float."""
    return (q | 0x4B000000).to(tl.float32, bitcast=True) - zm


@triton.jit
def _gemv_kernel(X, Q, S, Z, Bias, Y, N, K, NG, G_FIRST, G_STEP, stride_xm, stride_qn, stride_ym,
                 HAS_BIAS: tl.constexpr, GROUP: tl.constexpr, GPC: tl.constexpr, BLOCK_N: tl.constexpr):
    m, pid_n = tl.program_id(0), tl.program_id(1)
    GB: tl.constexpr = GROUP // 2  # packed bytes per row and group
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows = offs_n.to(tl.int64)
    offs_g = tl.arange(0, GPC)
    offs_b = tl.arange(0, GB)
    x_row = X + m.to(tl.int64) * stride_xm
    kb_total = (K + 1) // 2
    # One float32 per packed byte (its two inputs summed in): half the registers of one per input.
    acc = tl.zeros([BLOCK_N, GPC, GB], dtype=tl.float32)
    for j0 in range(0, tl.cdiv(K, GROUP), GPC):
        j = j0 + offs_g  # local group index
        byte = j[:, None] * GB + offs_b[None, :]  # [GPC, GB]
        b_mask = byte < kb_total
        w_mask = n_mask[:, None, None] & b_mask[None, :, :]
        packed = tl.load(Q + rows[:, None, None] * stride_qn + byte[None, :, :], mask=w_mask, other=0).to(tl.int32)
        col = G_FIRST + j * G_STEP
        sz_mask = n_mask[:, None] & (j < tl.cdiv(K, GROUP))[None, :]
        s = tl.load(S + rows[:, None] * NG + col[None, :], mask=sz_mask, other=0.0)[:, :, None]
        zm = tl.load(Z + rows[:, None] * NG + col[None, :], mask=sz_mask, other=0).to(tl.float32)[:, :, None] + 8388608.0
        k_even = byte * 2
        x_even = tl.load(x_row + k_even, mask=k_even < K, other=0.0).to(tl.float32)
        x_odd = tl.load(x_row + k_even + 1, mask=k_even + 1 < K, other=0.0).to(tl.float32)
        # (q - z) * s * x without rounding the weight to x's dtype (the twin does; the difference
        # is within that rounding): the scale multiplies the byte's two products at once.
        t = _nibble_minus_zero(packed & 0xF, zm) * x_even[None, :, :] + _nibble_minus_zero(packed >> 4, zm) * x_odd[None, :, :]
        acc += t * s
    y = tl.sum(tl.sum(acc, 2), 1)
    if HAS_BIAS:
        y += tl.load(Bias + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    tl.store(Y + m.to(tl.int64) * stride_ym + offs_n, y.to(Y.dtype.element_ty), mask=n_mask)


@triton.jit
def _gemm_kernel(X, Q, S, Z, Bias, Y, M, N, K, NG, G_FIRST, G_STEP, stride_xm, stride_qn, stride_ym,
                 HAS_BIAS: tl.constexpr, GROUP: tl.constexpr, IEEE: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    HALF: tl.constexpr = BLOCK_K // 2
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask, n_mask = offs_m < M, offs_n < N
    rows = offs_n.to(tl.int64)
    offs_b = tl.arange(0, HALF)
    offs_k = tl.arange(0, BLOCK_K)
    kb_total = (K + 1) // 2
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        byte = k0 // 2 + offs_b
        packed = tl.load(Q + rows[:, None] * stride_qn + byte[None, :],
                         mask=n_mask[:, None] & (byte < kb_total)[None, :], other=0).to(tl.int32)
        col = G_FIRST + (k0 // GROUP) * G_STEP  # BLOCK_K divides GROUP: one group per chunk
        s = tl.load(S + rows * NG + col, mask=n_mask, other=0.0)[:, None]
        z = tl.load(Z + rows * NG + col, mask=n_mask, other=0).to(tl.float32)[:, None]
        # [BLOCK_N, HALF, 2] -> [BLOCK_N, BLOCK_K]: even inputs in the low nibbles, odd in the high
        q = tl.reshape(tl.join(packed & 0xF, packed >> 4), (BLOCK_N, BLOCK_K)).to(tl.float32)
        w = ((q - z) * s).to(X.dtype.element_ty)  # rounded to x's dtype, as the twin's weight is
        k = k0 + offs_k
        x = tl.load(X + offs_m.to(tl.int64)[:, None] * stride_xm + k[None, :],
                    mask=m_mask[:, None] & (k < K)[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w))
    if HAS_BIAS:
        acc += tl.load(Bias + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :], acc.to(Y.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def _dequant_kernel(Q, S, Z, G, W, N, K, NG, stride_qn, stride_wn,
                    BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    pid_n, pid_b = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    byte = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    rows = offs_n.to(tl.int64)
    n_mask = offs_n < N
    packed = tl.load(Q + rows[:, None] * stride_qn + byte[None, :], mask=n_mask[:, None] & (byte < (K + 1) // 2)[None, :],
                     other=0).to(tl.int32)
    # Interleave the nibbles into input order so each row's store is one contiguous run (storing
    # even and odd inputs separately wrote every other element: half-empty transactions).
    q = tl.reshape(tl.join(packed & 0xF, packed >> 4), (BLOCK_N, 2 * BLOCK_B)).to(tl.float32)
    k = pid_b * 2 * BLOCK_B + tl.arange(0, 2 * BLOCK_B)
    k_ok = k < K
    mask = n_mask[:, None] & k_ok[None, :]
    grp = tl.load(G + k, mask=k_ok, other=0)
    s = tl.load(S + rows[:, None] * NG + grp[None, :], mask=mask, other=0.0)
    z = tl.load(Z + rows[:, None] * NG + grp[None, :], mask=mask, other=0).to(tl.float32)
    tl.store(W + rows[:, None] * stride_wn + k[None, :], ((q - z) * s).to(W.dtype.element_ty), mask=mask)


def _gemv_config(n: int, group: int) -> Tuple[int, int, int, int]:
    """(BLOCK_N, groups per chunk, num_warps, num_stages): 512 packed bytes per row and chunk, so a
    chunk of a program moves 4-8 KB, as the bf16 GEMV's do (sglang/kernels/gemv.py; 256 bytes ran
    at a quarter of the copy bandwidth on an H100, benchmarks/results/gpu_quant_h100_2026-12-07_run2.json);
    fewer rows per program for narrow outputs so every SM has several programs."""
    gpc = max(1, 1024 // group)
    return (16, gpc, 8, 3) if n >= 6144 else (8, gpc, 8, 3)


def int4_gemv(x2: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
              layout: GemvLayout, k: int, bias: Optional[torch.Tensor]) -> torch.Tensor:
    m, n = x2.shape[0], qweight.shape[0]
    y = torch.empty(m, n, device=x2.device, dtype=x2.dtype)
    group, first, step = layout
    block_n, gpc, warps, stages = _gemv_config(n, group)
    _gemv_kernel[(m, triton.cdiv(n, block_n))](
        x2, qweight, scales, zeros, bias if bias is not None else y, y, n, k, scales.shape[1], first, step,
        x2.stride(0), qweight.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, GROUP=group, GPC=gpc, BLOCK_N=block_n, num_warps=warps, num_stages=stages)
    return y


def _gemm_config(m: int, group: int) -> Tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages). Decode batches (m <= 128) are one row
    block, so the weight is read once; narrow BLOCK_N keeps enough programs for the SMs."""
    block_k = min(64, group)
    if m <= 128:
        block_m = max(16, triton.next_power_of_2(m))
        return block_m, 64 if m <= 32 else 32, block_k, 4, 4
    return 128, 128, block_k, 8, 3


def int4_gemm(x2: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
              layout: GemvLayout, k: int, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Fused dequantize-and-multiply (tl.dot) for in-order groups at any row count."""
    m, n = x2.shape[0], qweight.shape[0]
    y = torch.empty(m, n, device=x2.device, dtype=x2.dtype)
    group, first, step = layout
    block_m, block_n, block_k, warps, stages = _gemm_config(m, group)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _gemm_kernel[grid](x2, qweight, scales, zeros, bias if bias is not None else y, y, m, n, k, scales.shape[1],
                       first, step, x2.stride(0), qweight.stride(0), y.stride(0), HAS_BIAS=bias is not None,
                       GROUP=group, IEEE=x2.dtype == torch.float32, BLOCK_M=block_m, BLOCK_N=block_n,
                       BLOCK_K=block_k, num_warps=warps, num_stages=stages)
    return y


def dequantize_int4_triton(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                           dtype: torch.dtype) -> torch.Tensor:
    """The weight [N, K] in `dtype` (CUDA), as the twin's dequantize then cast."""
    n, k = qweight.shape[0], g_idx.shape[0]
    w = torch.empty(n, k, device=qweight.device, dtype=dtype)
    block_n, block_b = 32, 64
    grid = (triton.cdiv(n, block_n), triton.cdiv(-(-k // 2), block_b))
    _dequant_kernel[grid](qweight, scales, zeros, g_idx, w, n, k, scales.shape[1], qweight.stride(0), w.stride(0),
                          BLOCK_N=block_n, BLOCK_B=block_b)
    return w


def int4_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                g_idx: torch.Tensor, bias: Optional[torch.Tensor], layout: Optional[GemvLayout] = None) -> torch.Tensor:
    """x [..., K] (CUDA, float32/bfloat16/float16) -> [..., N] in x's dtype. `layout` (from
    `gemv_layout`, computed at load) lets a few rows take the GEMV."""
    k, n = g_idx.shape[0], qweight.shape[0]
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if x2.shape[0] == 0:
        return x.new_empty(*x.shape[:-1], n)
    scales, zeros = scales.contiguous(), zeros.contiguous()
    if layout is not None and x2.shape[0] <= MAX_GEMV_ROWS:
        y = int4_gemv(x2, qweight, scales, zeros, layout, k, bias)
    elif layout is not None and x2.shape[0] <= MAX_FUSED_ROWS and layout[0] % 16 == 0:
        y = int4_gemm(x2, qweight, scales, zeros, layout, k, bias)
    else:
        y = F.linear(x2, dequantize_int4_triton(qweight, scales, zeros, g_idx.contiguous(), x.dtype), bias)
    return y.reshape(*x.shape[:-1], n)
