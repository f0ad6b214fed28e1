"""Segmented LoRA shrink: h[i] = x[rows[i]] @ A[slot]^T for the rows i of each segment (rows
grouped by adapter slot; layout and torch twin: `sglang.kernels.ref.lora`).

Grid: (segment, row block inside it, block of N = stacked rank x split of K). Grouping rows by
slot lets a program load its adapter's A tile once for BLOCK_M rows, however the batch
interleaves adapters. Programs past their segment's end return at once, so a CUDA graph can
launch a fixed grid (one segment per slot, as many row blocks as the batch has rows) and pay
little for empty ones.

Split K: at decode a launch has a handful of (segment, row block, N block) programs, and each
walked all of K (4096 to 14336) alone: ~18 us per launch on an H100, 256 launches per token on
the Llama-3-8B shape (+4.5 ms, benchmarks/results/lora_h100_2026-12-07.json). With few rows the
K range is split over programs, each writing a float32 partial; `lora_expand` sums the partials
as it reads h, so the split costs no extra launch and the sum has a fixed order (deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _lora_shrink_kernel(X, A, H, Seg, Rows, num_seg, K, N, K_PER, SPLIT, stride_xm, stride_as, stride_an,
                        stride_hs, stride_hm, IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    s, pid_m, pid_2 = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    pid_n, split = pid_2 // SPLIT, pid_2 % SPLIT
    length = tl.load(Seg + num_seg + s)
    if pid_m * BLOCK_M >= length:
        return
    start = tl.load(Seg + s)
    slot = tl.load(Seg + 2 * num_seg + s)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask, n_mask = offs_m < length, offs_n < N
    pos = (start + offs_m).to(tl.int64)
    rows = tl.load(Rows + pos, mask=m_mask, other=0).to(tl.int64)
    a_base = A + slot.to(tl.int64) * stride_as
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    k_begin = split * K_PER
    k_end = tl.minimum(k_begin + K_PER, K)
    for k0 in range(k_begin, k_end, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < k_end
        x = tl.load(X + rows[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        a = tl.load(a_base + offs_n[:, None] * stride_an + k[None, :], mask=n_mask[:, None] & k_mask[None, :],
                    other=0.0)
        if IEEE:
            acc += tl.dot(x, tl.trans(a), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(a))
    tl.store(H + split * stride_hs + pos[:, None] * stride_hm + offs_n[None, :], acc.to(H.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


BLOCK_K = 64


def k_splits(num_rows: int, k: int) -> int:
    """How many programs share K: enough for ~256 (few rows) or ~512 columns each while the batch
    has few rows; one when its row blocks already fill the GPU (and the partials would be large)."""
    if num_rows > 256:
        return 1
    per = 256 if num_rows <= 16 else 512
    return max(1, min(32, triton.cdiv(k, per)))


def lora_shrink(x: torch.Tensor, a: torch.Tensor, seg: torch.Tensor, rows: torch.Tensor, max_len: int) -> torch.Tensor:
    """x [T, K] (unit column stride), a [S, N, K], seg int64 [3, num_segments] (start, length, slot),
    rows int64 [R] -> h float32 [splits, R, N] in segment order: partial products over slices of K
    whose sum over dim 0 is x[rows] @ A[slot]^T (`lora_expand` sums them). `max_len` bounds every
    segment's length. The split depends only on R and K, so a CUDA graph replays a fixed one."""
    if x.stride(1) != 1:
        x = x.contiguous()
    num_seg = seg.shape[1]
    n, k = a.shape[1], a.shape[2]
    split = k_splits(rows.shape[0], k)
    h = torch.empty(split, rows.shape[0], n, dtype=torch.float32, device=x.device)
    if num_seg == 0 or max_len == 0:
        return h
    block_m = 16 if max_len <= 16 else 64
    block_n = 16 if n <= 16 else 32
    k_per = triton.cdiv(triton.cdiv(k, split), BLOCK_K) * BLOCK_K
    grid = (num_seg, triton.cdiv(max_len, block_m), triton.cdiv(n, block_n) * split)
    _lora_shrink_kernel[grid](x, a, h, seg, rows, num_seg, k, n, k_per, split, x.stride(0), a.stride(0), a.stride(1),
                              h.stride(0), h.stride(1), IEEE=x.dtype == torch.float32, BLOCK_M=block_m,
                              BLOCK_N=block_n, BLOCK_K=BLOCK_K)
    return h
