"""Torch twin of `sglang.kernels.extend_attention.extend_attention_fwd` (prefill on a cached prefix)."""

from __future__ import annotations

from typing import Optional

import torch

from sglang.kernels.ref.attention_math import masked_attention, visible_mask


def extend_attention_fwd(
    q_extend: torch.Tensor,  # [N, H, D] new tokens of all requests, concatenated
    k_extend: torch.Tensor,  # [N, KVH, D]
    v_extend: torch.Tensor,  # [N, KVH, Dv]
    o_extend: torch.Tensor,  # [N, H, Dv], written
    k_buffer: torch.Tensor,  # [slots, KVH, D]
    v_buffer: torch.Tensor,  # [slots, KVH, Dv]
    req_to_token: torch.Tensor,  # [max_reqs, max_ctx] int32
    req_pool_indices: torch.Tensor,  # [bs]
    seq_lens: torch.Tensor,  # [bs], prefix + new tokens
    extend_seq_lens: torch.Tensor,  # [bs]
    extend_start_loc: torch.Tensor,  # [bs], offset of request i in the token dim
    max_len_extend: int,
    sm_scale: float,
    logit_cap: float = 0.0,
    sliding_window: Optional[int] = None,
    visible_until: Optional[torch.Tensor] = None,  # [N]: last sequence position each new token sees
) -> torch.Tensor:
    """New tokens attend to the cached prefix (read through req_to_token at positions
    < seq_len - extend_len) and causally to each other (read from k_extend / v_extend), or up to
    their `visible_until` positions when given."""
    del max_len_extend  # only sizes the Triton grid
    per_req = zip(
        req_pool_indices.tolist(), seq_lens.tolist(), extend_seq_lens.tolist(), extend_start_loc.tolist()
    )
    for row, seq_len, ext_len, start in per_req:
        if ext_len == 0:
            continue
        prefix_len = seq_len - ext_len
        slots = req_to_token[row, :prefix_len].long()
        new = slice(start, start + ext_len)
        k = torch.cat([k_buffer[slots].to(k_extend.dtype), k_extend[new]])
        v = torch.cat([v_buffer[slots].to(v_extend.dtype), v_extend[new]])
        q_pos = torch.arange(prefix_len, seq_len, device=q_extend.device)
        visible = visible_mask(q_pos, seq_len, sliding_window)
        if visible_until is not None:  # keys after a query, up to its limit (never outside the window)
            k_pos = torch.arange(seq_len, device=q_pos.device)
            visible |= (k_pos[None, :] > q_pos[:, None]) & (k_pos[None, :] <= visible_until[new, None])
        o_extend[new] = masked_attention(q_extend[new], k, v, visible, sm_scale, logit_cap).to(o_extend.dtype)
    return o_extend
