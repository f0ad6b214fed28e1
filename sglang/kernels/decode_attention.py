"""Decode attention over the paged, token-level KV cache (one query token per request).

Split-K over the sequence: stage 1 gives each (request, kv head, split) program a contiguous
range of positions and all q heads that share the kv head (GQA: K/V are read once per group,
and the group becomes the M dim of tl.dot); it writes a normalized partial output and its
log-sum-exp. Stage 2 merges the splits per (request, head). Splitting keeps the GPU busy when
the batch is small but sequences are long; the split count is fixed so CUDA graphs can capture it.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from sglang.kernels.attention_common import (
    check_last_dim_contiguous,
    gqa_group,
    next_pow2,
    soft_cap,
    window_arg,
)


@triton.jit
def _decode_split_kernel(
    Q, K_buf, V_buf, Req_to_token, Req_pool_indices, Seq_lens, Partial,
    sm_scale, logit_cap, window,
    stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_r2t,
    stride_pb, stride_ph, stride_ps,
    GROUP: tl.constexpr, BLOCK_H: tl.constexpr,
    D: tl.constexpr, BLOCK_D: tl.constexpr, DV: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr, HAS_CAP: tl.constexpr,
):
    b = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    offs_h = tl.arange(0, BLOCK_H)
    head_mask = offs_h < GROUP
    heads = kv_head * GROUP + offs_h
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_mask = offs_d < D
    dv_mask = offs_dv < DV

    seq_len = tl.load(Seq_lens + b).to(tl.int32)
    row = tl.load(Req_pool_indices + b).to(tl.int64)
    kv_lo = tl.maximum(seq_len - window, 0)  # the query at seq_len - 1 sees the last `window` positions
    # Whole tiles per split: short sequences use fewer splits (the rest exit at once) instead of
    # every split loading a mostly-masked tile.
    per_split = tl.cdiv(tl.cdiv(seq_len - kv_lo, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = kv_lo + split * per_split
    end = tl.minimum(start + per_split, seq_len)

    q = tl.load(
        Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=head_mask[:, None] & d_mask[None, :], other=0.0,
    )
    m_i = tl.full([BLOCK_H], -1.0e30, dtype=tl.float32)  # finite: a fully masked tile gives exp(-inf)=0, not NaN
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        pos_mask = pos < end
        slot = tl.load(Req_to_token + row * stride_r2t + pos, mask=pos_mask, other=0).to(tl.int64)
        k = tl.load(
            K_buf + slot[None, :] * stride_kt + kv_head * stride_kh + offs_d[:, None],
            mask=pos_mask[None, :] & d_mask[:, None], other=0.0,
        )
        s = tl.dot(q, k.to(q.dtype)) * sm_scale
        if HAS_CAP:
            s = soft_cap(s, logit_cap)
        s = tl.where(pos_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            V_buf + slot[:, None] * stride_vt + kv_head * stride_vh + offs_dv[None, :],
            mask=pos_mask[:, None] & dv_mask[None, :], other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype))
        m_i = m_new

    # An empty split (short sequence) stores zeros with lse = -inf so stage 2 gives it no weight.
    has_keys = l_i > 0
    out = tl.where(has_keys[:, None], acc / tl.where(has_keys, l_i, 1.0)[:, None], 0.0)
    lse = tl.where(has_keys, m_i + tl.log(tl.where(has_keys, l_i, 1.0)), float("-inf"))
    base = Partial + b * stride_pb + heads * stride_ph + split * stride_ps
    tl.store(base[:, None] + offs_dv[None, :], out, mask=head_mask[:, None] & dv_mask[None, :])
    tl.store(base + DV, lse, mask=head_mask)


@triton.jit
def _decode_reduce_kernel(
    Partial, O,
    stride_pb, stride_ph, stride_ps, stride_ob, stride_oh,
    DV: tl.constexpr, BLOCK_DV: tl.constexpr, NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_dv = tl.arange(0, BLOCK_DV)
    s_mask = offs_s < NUM_SPLITS
    dv_mask = offs_dv < DV
    base = Partial + b * stride_pb + h * stride_ph + offs_s * stride_ps
    lse = tl.load(base + DV, mask=s_mask, other=float("-inf"))
    part = tl.load(base[:, None] + offs_dv[None, :], mask=s_mask[:, None] & dv_mask[None, :], other=0.0)
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)  # seq_len 0 (e.g. graph padding): every weight is 0
    w = tl.exp(lse - m)
    total = tl.sum(w, 0)
    out = tl.sum(w[:, None] * part, 0) / tl.where(total > 0, total, 1.0)
    tl.store(O + b * stride_ob + h * stride_oh + offs_dv, out.to(O.dtype.element_ty), mask=dv_mask)


def decode_scratch(batch_size: int, num_heads: int, num_kv_splits: int, v_head_dim: int, device) -> torch.Tensor:
    """Scratch for stage 1: per (request, head, split) the partial output and, last, its lse."""
    return torch.empty(batch_size, num_heads, num_kv_splits, v_head_dim + 1, dtype=torch.float32, device=device)


def _scratch_for(attn_logits: Optional[torch.Tensor], bs: int, heads: int, splits: int, dv: int, device) -> torch.Tensor:
    if attn_logits is None:
        return decode_scratch(bs, heads, splits, dv, device)
    want = (heads, splits, dv + 1)
    if attn_logits.dtype != torch.float32 or attn_logits.shape[0] < bs or tuple(attn_logits.shape[1:]) != want:
        raise ValueError(
            f"attn_logits must be float32 [>= {bs}, {heads}, {splits}, {dv + 1}] (see decode_scratch), "
            f"got {attn_logits.dtype} {list(attn_logits.shape)}"
        )
    return attn_logits


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
    attn_logits: Optional[torch.Tensor] = None,  # scratch from decode_scratch (static under CUDA graphs)
) -> torch.Tensor:
    bs, num_heads, head_dim = q.shape
    num_kv_heads, v_head_dim = v_buffer.shape[1], v_buffer.shape[2]
    group = gqa_group(num_heads, num_kv_heads)
    check_last_dim_contiguous(q=q, k_buffer=k_buffer, v_buffer=v_buffer, o=o, req_to_token=req_to_token)
    if bs == 0:
        return o
    partial = _scratch_for(attn_logits, bs, num_heads, num_kv_splits, v_head_dim, q.device)
    widest = max(head_dim, v_head_dim)
    # MLA's 576-wide latent heads (padded to 1024): 16-key tiles without pipelining fit shared memory
    block_n, stages = (16, 1) if widest > 256 else (32, 2) if widest > 128 else (64, 2)
    _decode_split_kernel[(bs, num_kv_heads, num_kv_splits)](
        q, k_buffer, v_buffer, req_to_token, req_pool_indices, seq_lens, partial,
        float(sm_scale), float(logit_cap), window_arg(sliding_window),
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1),
        v_buffer.stride(0), v_buffer.stride(1), req_to_token.stride(0),
        partial.stride(0), partial.stride(1), partial.stride(2),
        GROUP=group, BLOCK_H=next_pow2(group), D=head_dim, BLOCK_D=next_pow2(head_dim),
        DV=v_head_dim, BLOCK_DV=next_pow2(v_head_dim), BLOCK_N=block_n, NUM_SPLITS=num_kv_splits,
        HAS_CAP=logit_cap > 0, num_warps=4, num_stages=stages,
    )
    _decode_reduce_kernel[(bs, num_heads)](
        partial, o,
        partial.stride(0), partial.stride(1), partial.stride(2), o.stride(0), o.stride(1),
        DV=v_head_dim, BLOCK_DV=next_pow2(v_head_dim), NUM_SPLITS=num_kv_splits,
        BLOCK_S=next_pow2(num_kv_splits, minimum=2), num_warps=4,
    )
    return o
