"""Dense masked attention shared by the decode and extend twins."""

from __future__ import annotations

from typing import Optional

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for low-precision inputs; float64 stays float64 so tests can build exact references."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def visible_mask(q_pos: torch.Tensor, kv_len: int, sliding_window: Optional[int]) -> torch.Tensor:
    """[M, kv_len] bool: key position p is visible from query position t iff p <= t and, with a
    window W, t - p < W (the query sees its own position and the W - 1 before it)."""
    k_pos = torch.arange(kv_len, device=q_pos.device)
    diff = q_pos[:, None] - k_pos[None, :]
    mask = diff >= 0
    if sliding_window:
        mask &= diff < sliding_window
    return mask


def masked_attention(
    q: torch.Tensor,  # [M, H, D]
    k: torch.Tensor,  # [L, KVH, D]
    v: torch.Tensor,  # [L, KVH, Dv]
    visible: torch.Tensor,  # [M, L] bool
    sm_scale: float,
    logit_cap: float = 0.0,
) -> torch.Tensor:  # [M, H, Dv] in the compute dtype
    ct = compute_dtype(q.dtype)
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    group = num_heads // num_kv_heads
    k = k.to(ct).repeat_interleave(group, dim=1)
    v = v.to(ct).repeat_interleave(group, dim=1)
    scores = torch.einsum("mhd,lhd->hml", q.to(ct), k) * sm_scale
    if logit_cap > 0:
        scores = logit_cap * torch.tanh(scores / logit_cap)
    scores = scores.masked_fill(~visible[None], float("-inf"))
    # A row with no visible key would be all -inf; its output is defined as zeros, not NaN.
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("hml,lhd->mhd", probs, v)
