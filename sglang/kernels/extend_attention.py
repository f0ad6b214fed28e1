"""Extend (prefill) attention: new tokens attend to their cached prefix plus, causally, each other.

One program per (request, q head, block of BLOCK_M new tokens), all requests in one launch. Phase 1
walks the prefix through req_to_token (paged K/V pool); phase 2 walks the new tokens' own K/V,
which the caller passes directly (k_extend / v_extend), so the kernel does not depend on whether
they were already written to the pool. One online softmax spans both phases.

With `visible_until` (one sequence position per new token), a new token sees the new keys up to
that position instead of its own: Gemma 3's image tokens see their whole image. Phase 2 of a
block then runs to the furthest limit of its queries. Cached keys are behind every query anyway.
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
def _online_softmax_step(q, k, v, visible, m_i, l_i, acc, sm_scale, logit_cap, HAS_CAP: tl.constexpr,
                         PRECISION: tl.constexpr):
    """Fold one tile of keys ([BLOCK_D, BLOCK_N]) and values ([BLOCK_N, BLOCK_DV]) into the state."""
    s = tl.dot(q, k.to(q.dtype), input_precision=PRECISION) * sm_scale
    if HAS_CAP:
        s = soft_cap(s, logit_cap)
    s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype), input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _extend_kernel(
    Q, K_ext, V_ext, O, K_buf, V_buf, Req_to_token, Req_pool_indices, Seq_lens, Ext_lens, Ext_start, Q_limit,
    sm_scale, logit_cap, window,
    stride_qt, stride_qh, stride_ket, stride_keh, stride_vet, stride_veh, stride_ot, stride_oh,
    stride_kbt, stride_kbh, stride_vbt, stride_vbh, stride_r2t,
    GROUP: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, DV: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_CAP: tl.constexpr, HAS_LIMIT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    b = tl.program_id(0)
    head = tl.program_id(1)
    m_block = tl.program_id(2)
    ext_len = tl.load(Ext_lens + b).to(tl.int32)
    if m_block * BLOCK_M >= ext_len:  # the grid is sized for the longest request
        return
    seq_len = tl.load(Seq_lens + b).to(tl.int32)
    prefix_len = seq_len - ext_len
    tok0 = tl.load(Ext_start + b).to(tl.int64)
    row = tl.load(Req_pool_indices + b).to(tl.int64)
    kv_head = head // GROUP

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < ext_len
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_mask = offs_d < D
    dv_mask = offs_dv < DV
    q = tl.load(
        Q + (tok0 + offs_m)[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
        mask=m_mask[:, None] & d_mask[None, :], other=0.0,
    )
    q_pos = prefix_len + offs_m  # absolute positions of this block's queries
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # finite: fully masked rows stay NaN-free
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

    # Phase 1: cached prefix, positions [lo, prefix_len), gathered through req_to_token.
    lo = tl.maximum(prefix_len + m_block * BLOCK_M - window + 1, 0)  # the block's first query's reach
    for n0 in range(lo, prefix_len, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        pos_mask = pos < prefix_len
        slot = tl.load(Req_to_token + row * stride_r2t + pos, mask=pos_mask, other=0).to(tl.int64)
        k = tl.load(
            K_buf + slot[None, :] * stride_kbt + kv_head * stride_kbh + offs_d[:, None],
            mask=pos_mask[None, :] & d_mask[:, None], other=0.0,
        )
        v = tl.load(
            V_buf + slot[:, None] * stride_vbt + kv_head * stride_vbh + offs_dv[None, :],
            mask=pos_mask[:, None] & dv_mask[None, :], other=0.0,
        )
        visible = pos_mask[None, :] & ((q_pos[:, None] - pos[None, :]) < window)
        m_i, l_i, acc = _online_softmax_step(q, k, v, visible, m_i, l_i, acc, sm_scale, logit_cap, HAS_CAP,
                                             PRECISION)

    # Phase 2: the new tokens, causal (or up to each query's limit), indices [lo2, hi) within the
    # extend segment.
    hi = tl.minimum(ext_len, (m_block + 1) * BLOCK_M)
    if HAS_LIMIT:
        limit = tl.load(Q_limit + tok0 + offs_m, mask=m_mask, other=0).to(tl.int32) - prefix_len
        limit = tl.where(m_mask, limit, offs_m)
        hi = tl.minimum(ext_len, tl.maximum(hi, tl.max(limit, 0) + 1))
    else:
        limit = offs_m
    lo2 = tl.maximum(m_block * BLOCK_M - window + 1, 0)
    for n0 in range(lo2, hi, BLOCK_N):
        idx = n0 + tl.arange(0, BLOCK_N)
        idx_mask = idx < hi
        k = tl.load(
            K_ext + (tok0 + idx)[None, :] * stride_ket + kv_head * stride_keh + offs_d[:, None],
            mask=idx_mask[None, :] & d_mask[:, None], other=0.0,
        )
        v = tl.load(
            V_ext + (tok0 + idx)[:, None] * stride_vet + kv_head * stride_veh + offs_dv[None, :],
            mask=idx_mask[:, None] & dv_mask[None, :], other=0.0,
        )
        causal = offs_m[:, None] - idx[None, :]
        visible = idx_mask[None, :] & (idx[None, :] <= limit[:, None]) & (causal < window)
        m_i, l_i, acc = _online_softmax_step(q, k, v, visible, m_i, l_i, acc, sm_scale, logit_cap, HAS_CAP,
                                             PRECISION)

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        O + (tok0 + offs_m)[:, None] * stride_ot + head * stride_oh + offs_dv[None, :],
        out.to(O.dtype.element_ty), mask=m_mask[:, None] & dv_mask[None, :],
    )


def _tiles(head_dim: int) -> tuple:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages): smaller tiles for wide heads keep q/k/v tiles in
    shared memory. MLA's 576-wide latent heads (padded to 1024) need 384 KiB at 64 x 32 tiles, over
    the H100's 227 KiB; 16 x 16 tiles without pipelining fit."""
    if head_dim > 256:
        return 16, 16, 4, 1
    if head_dim > 128:
        return 64, 32, 8, 2
    return 64, 64, 4, 2


def extend_attention_fwd(
    q_extend: torch.Tensor,  # [N, H, D]
    k_extend: torch.Tensor,  # [N, KVH, D]
    v_extend: torch.Tensor,  # [N, KVH, Dv]
    o_extend: torch.Tensor,  # [N, H, Dv], written
    k_buffer: torch.Tensor,  # [slots, KVH, D]
    v_buffer: torch.Tensor,  # [slots, KVH, Dv]
    req_to_token: torch.Tensor,  # [max_reqs, max_ctx] int32
    req_pool_indices: torch.Tensor,  # [bs]
    seq_lens: torch.Tensor,  # [bs], prefix + new tokens
    extend_seq_lens: torch.Tensor,  # [bs]
    extend_start_loc: torch.Tensor,  # [bs]
    max_len_extend: int,  # host int (from extend_seq_lens_cpu): sizes the grid without a sync
    sm_scale: float,
    logit_cap: float = 0.0,
    sliding_window: Optional[int] = None,
    visible_until: Optional[torch.Tensor] = None,  # [N] int64: last sequence position each new token sees
) -> torch.Tensor:
    num_heads, head_dim = q_extend.shape[1], q_extend.shape[2]
    num_kv_heads, v_head_dim = k_extend.shape[1], v_extend.shape[2]
    group = gqa_group(num_heads, num_kv_heads)
    check_last_dim_contiguous(
        q_extend=q_extend, k_extend=k_extend, v_extend=v_extend, o_extend=o_extend,
        k_buffer=k_buffer, v_buffer=v_buffer, req_to_token=req_to_token,
    )
    bs = req_pool_indices.shape[0]
    if bs == 0 or max_len_extend <= 0:
        return o_extend
    block_m, block_n, num_warps, num_stages = _tiles(max(head_dim, v_head_dim))
    grid = (bs, num_heads, triton.cdiv(max_len_extend, block_m))
    _extend_kernel[grid](
        q_extend, k_extend, v_extend, o_extend, k_buffer, v_buffer, req_to_token,
        req_pool_indices, seq_lens, extend_seq_lens, extend_start_loc,
        visible_until if visible_until is not None else extend_start_loc,  # unread without a limit
        float(sm_scale), float(logit_cap), window_arg(sliding_window),
        q_extend.stride(0), q_extend.stride(1), k_extend.stride(0), k_extend.stride(1),
        v_extend.stride(0), v_extend.stride(1), o_extend.stride(0), o_extend.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1), req_to_token.stride(0),
        GROUP=group, D=head_dim, BLOCK_D=next_pow2(head_dim), DV=v_head_dim, BLOCK_DV=next_pow2(v_head_dim),
        BLOCK_M=block_m, BLOCK_N=block_n, HAS_CAP=logit_cap > 0, HAS_LIMIT=visible_until is not None,
        # float32 stays float32 (Triton's default for it is TF32, ~1e-3 off); 16-bit types are exact anyway.
        PRECISION="ieee" if q_extend.dtype == torch.float32 else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    return o_extend
