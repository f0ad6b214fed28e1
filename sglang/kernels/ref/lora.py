"""Torch twins of the segmented LoRA kernels (`sglang.kernels.lora_shrink` / `lora_expand`).

Layout: the batch's token rows that use an adapter are listed grouped by adapter slot in `rows`
(int64 [R], "segment order"); `seg` (int64 [3, S]) gives each segment's start in that order, its
length and its slot. Rows of the base model (slot 0) are in no segment: the shrink output `h`
([splits, R', N], R' >= R, in segment order) has no row for them and their output is left untouched.
A segment of length 0 is skipped, so a CUDA graph can keep one segment per slot.
"""

from __future__ import annotations

import torch


def lora_shrink(x: torch.Tensor, a: torch.Tensor, seg: torch.Tensor, rows: torch.Tensor, max_len: int) -> torch.Tensor:
    """h[0, i] = x[rows[i]] @ a[slot]^T for i in each segment. x [T, K], a [S, N, K] -> h [1, len(rows), N]
    (one "partial": the Triton kernel may split K into several, which lora_expand sums)."""
    h = torch.zeros(rows.shape[0], a.shape[1], dtype=x.dtype, device=x.device)
    for start, length, slot in seg.t().tolist():
        if length > 0:
            h[start:start + length] = x[rows[start:start + length]] @ a[slot].t()
    return h.unsqueeze(0)


def lora_expand(h: torch.Tensor, b: torch.Tensor, out: torch.Tensor, seg: torch.Tensor, rows: torch.Tensor,
                max_len: int) -> torch.Tensor:
    """out[rows[i]] += h[i] @ b[slot]^T for i in each segment, in place. h [splits, R, N] (summed over the
    splits, rounded to b's dtype) or [R, N], b [S, M, N], out [T, M]."""
    if h.dim() == 3:
        h = h.sum(0).to(b.dtype)
    for start, length, slot in seg.t().tolist():
        if length > 0:
            idx = rows[start:start + length]
            out[idx] += h[start:start + length] @ b[slot].t()
    return out
