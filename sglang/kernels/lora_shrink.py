"""Segmented LoRA shrink: h[rows] = x[rows] @ A[slot]^T for each segment of rows sharing one
adapter slot (torch twin and layout: `sglang.kernels.ref.lora`).

Grid: (segment, row block inside it, block of N = stacked rank). Rows of slot 0 (no adapter) and
past a segment's end are masked out, so one launch serves a batch mixing any adapters; the grid
depends only on the segment count and the longest segment, so a decode batch (one row per
segment) keeps one shape per batch size.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _lora_shrink_kernel(X, A, H, Seg, num_seg, K, N, stride_xm, stride_as, stride_an, stride_hm,
                        IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    s, pid_m, pid_n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    start = tl.load(Seg + s)
    length = tl.load(Seg + num_seg + s)
    slot = tl.load(Seg + 2 * num_seg + s)
    length = tl.where(slot == 0, 0, length)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask, n_mask = offs_m < length, offs_n < N
    rows = (start + offs_m).to(tl.int64)
    a_base = A + slot.to(tl.int64) * stride_as
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < K
        x = tl.load(X + rows[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        a = tl.load(a_base + offs_n[:, None] * stride_an + k[None, :], mask=n_mask[:, None] & k_mask[None, :],
                    other=0.0)
        if IEEE:
            acc += tl.dot(x, tl.trans(a), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(a))
    tl.store(H + rows[:, None] * stride_hm + offs_n[None, :], acc.to(H.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


def lora_shrink(x: torch.Tensor, a: torch.Tensor, seg: torch.Tensor, max_len: int) -> torch.Tensor:
    """x [T, K], a [S, N, K], seg int64 [3, num_segments] (start, length, slot) -> h [T, N].
    Rows of slot-0 segments are left zero."""
    x = x.contiguous()
    num_seg = seg.shape[1]
    n, k = a.shape[1], a.shape[2]
    h = torch.zeros(x.shape[0], n, dtype=x.dtype, device=x.device)
    if num_seg == 0 or max_len == 0:
        return h
    block_m = 16 if max_len <= 16 else 32
    block_n = 16 if n <= 16 else 32
    grid = (num_seg, triton.cdiv(max_len, block_m), triton.cdiv(n, block_n))
    _lora_shrink_kernel[grid](x, a, h, seg.contiguous(), num_seg, k, n, x.stride(0), a.stride(0), a.stride(1),
                              h.stride(0), IEEE=x.dtype == torch.float32, BLOCK_M=block_m, BLOCK_N=block_n,
                              BLOCK_K=64)
    return h
