"""Torch twin of `sglang.kernels.decode_attention.decode_attention_fwd` (one query token per request)."""

from __future__ import annotations

from typing import Optional

import torch

from sglang.kernels.ref.attention_math import masked_attention, visible_mask


def decode_attention_fwd(
    q: torch.Tensor,  # [bs, H, D]
    k_buffer: torch.Tensor,  # [slots, KVH, D]
    v_buffer: torch.Tensor,  # [slots, KVH, Dv]
    o: torch.Tensor,  # [bs, H, Dv], written
    req_to_token: torch.Tensor,  # [max_reqs, max_ctx] int32
    req_pool_indices: torch.Tensor,  # [bs]
    seq_lens: torch.Tensor,  # [bs], including the query token
    sm_scale: float,
    logit_cap: float = 0.0,
    sliding_window: Optional[int] = None,
    num_kv_splits: int = 8,
    attn_logits: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Attend each request's query to the first seq_len KV slots of its req_to_token row.

    `num_kv_splits` and `attn_logits` only shape the Triton version's work; they are accepted
    here so the two are interchangeable. A request with seq_len 0 gets a zero output.
    """
    del num_kv_splits, attn_logits
    rows, lens = req_pool_indices.tolist(), seq_lens.tolist()
    for i, (row, seq_len) in enumerate(zip(rows, lens)):
        slots = req_to_token[row, :seq_len].long()
        q_pos = torch.tensor([seq_len - 1], device=q.device)
        visible = visible_mask(q_pos, seq_len, sliding_window)
        out = masked_attention(q[i : i + 1], k_buffer[slots], v_buffer[slots], visible, sm_scale, logit_cap)
        o[i] = out[0].to(o.dtype)
    return o
