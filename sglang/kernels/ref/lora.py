"""Torch twins of the segmented LoRA kernels (`sglang.kernels.lora_shrink` / `lora_expand`).

A batch's tokens form segments of consecutive rows using one adapter slot: `seg` is int64
[3, num_segments] holding each segment's first row, length and slot. Slot 0 means "no adapter":
its rows are skipped (their shrink output is left zero, their output untouched).
"""

from __future__ import annotations

import torch


def lora_shrink(x: torch.Tensor, a: torch.Tensor, seg: torch.Tensor, max_len: int) -> torch.Tensor:
    """h[rows] = x[rows] @ a[slot]^T per segment. x [T, K], a [S, N, K] -> h [T, N] (x's dtype)."""
    h = torch.zeros(x.shape[0], a.shape[1], dtype=x.dtype, device=x.device)
    for start, length, slot in seg.t().tolist():
        if slot != 0 and length > 0:
            h[start:start + length] = x[start:start + length] @ a[slot].t()
    return h


def lora_expand(h: torch.Tensor, b: torch.Tensor, out: torch.Tensor, seg: torch.Tensor, max_len: int) -> torch.Tensor:
    """out[rows] += h[rows] @ b[slot]^T per segment, in place. h [T, N], b [S, M, N], out [T, M]."""
    for start, length, slot in seg.t().tolist():
        if slot != 0 and length > 0:
            out[start:start + length] += h[start:start + length] @ b[slot].t()
    return out
