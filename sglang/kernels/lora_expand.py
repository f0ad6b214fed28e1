"""Segmented LoRA expand: out[rows[i]] += h[i] @ B[slot]^T for the rows i of each segment, in
place (layout and torch twin: `sglang.kernels.ref.lora`).

Grid: (segment, row block inside it, block of output features). B holds every output slice of a
fused module (q|k|v, gate|up) block-diagonally against the stacked ranks of h, so one launch
covers all slices; the scaling is already folded into B. Programs past their segment's end
return at once (fixed CUDA-graph grids). h comes as `lora_shrink`'s float32 partials over
slices of K ([splits, R, N]); their sum, rounded to B's dtype, is the h the product uses.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _lora_expand_kernel(H, B, Out, Seg, Rows, num_seg, N, M, SPLIT, stride_hs, stride_hm, stride_bs, stride_bm,
                        stride_om,
                        IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_OUT: tl.constexpr, BLOCK_N: tl.constexpr):
    s, pid_m, pid_o = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = tl.load(Seg + num_seg + s)
    if pid_m * BLOCK_M >= length:
        return
    start = tl.load(Seg + s)
    slot = tl.load(Seg + 2 * num_seg + s)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_o = pid_o * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    m_mask, o_mask = offs_m < length, offs_o < M
    pos = (start + offs_m).to(tl.int64)
    rows = tl.load(Rows + pos, mask=m_mask, other=0).to(tl.int64)
    b_base = B + slot.to(tl.int64) * stride_bs
    acc = tl.zeros([BLOCK_M, BLOCK_OUT], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < N
        h_ptrs = H + pos[:, None] * stride_hm + n[None, :]
        h_mask = m_mask[:, None] & n_mask[None, :]
        h = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for sp in range(0, SPLIT):  # the shrink's partials over slices of K, summed in a fixed order
            h += tl.load(h_ptrs + sp * stride_hs, mask=h_mask, other=0.0).to(tl.float32)
        h = h.to(B.dtype.element_ty)
        b = tl.load(b_base + offs_o[:, None] * stride_bm + n[None, :], mask=o_mask[:, None] & n_mask[None, :],
                    other=0.0)
        if IEEE:
            acc += tl.dot(h, tl.trans(b), input_precision="ieee")
        else:
            acc += tl.dot(h, tl.trans(b))
    mask = m_mask[:, None] & o_mask[None, :]
    ptrs = Out + rows[:, None] * stride_om + offs_o[None, :]
    prev = tl.load(ptrs, mask=mask, other=0.0)
    tl.store(ptrs, (prev.to(tl.float32) + acc).to(Out.dtype.element_ty), mask=mask)


def lora_expand(h: torch.Tensor, b: torch.Tensor, out: torch.Tensor, seg: torch.Tensor, rows: torch.Tensor,
                max_len: int) -> torch.Tensor:
    """h [splits, R, N] (partials summed here) or [R, N], in segment order, b [S, M, N], out [T, M]
    (unit column stride; the row stride is free), seg/rows as in lora_shrink; adds into out and
    returns it."""
    num_seg = seg.shape[1]
    n, m = b.shape[2], b.shape[1]
    if num_seg == 0 or max_len == 0:
        return out
    if h.dim() == 2:
        h = h.unsqueeze(0)
    if out.stride(1) != 1 or h.stride(2) != 1:
        raise ValueError("lora_expand needs unit column strides for h and out")
    block_m = 16 if max_len <= 16 else 64
    block_out = 64 if max_len <= 16 else 128
    grid = (num_seg, triton.cdiv(max_len, block_m), triton.cdiv(m, block_out))
    _lora_expand_kernel[grid](h, b, out, seg, rows, num_seg, n, m, h.shape[0], h.stride(0), h.stride(1), b.stride(0),
                              b.stride(1), out.stride(0), IEEE=b.dtype == torch.float32, BLOCK_M=block_m, BLOCK_OUT=block_out,
                              BLOCK_N=16)
    return out
