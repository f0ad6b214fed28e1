"""Rotary position embedding applied in place to q and k, one program per token.

The cos/sin cache ([max_pos, rot_dim], cos | sin) is built by the caller (see
`sglang.kernels.ref.rotary.build_cos_sin_cache`): rope scaling changes only that table. q and k
may be strided views of a fused qkv projection; only their last dim must be contiguous.

`rotary_and_store_kv` also writes the step's rotated k and its v into the paged KV pool at each
token's slot. A decode step would otherwise spend two more launches per layer on indexed copies
(index_put for k and for v: ~5 us of a ~140 us layer at batch 1 on an H200).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(X, stride_t, t, cos, sin, offs_j, j_mask, Dst,
                  NUM_HEADS: tl.constexpr, BLOCK_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                  HALF: tl.constexpr, NEOX: tl.constexpr, STORE: tl.constexpr,
                  PASS: tl.constexpr, BLOCK_PASS: tl.constexpr):
    """Rotate token t's heads of X in place; with STORE also write the whole rotated heads
    (the PASS unrotated tail dims included) to Dst, a contiguous [NUM_HEADS, HEAD_DIM] row."""
    heads = tl.arange(0, BLOCK_HEADS)
    head_mask = heads < NUM_HEADS
    mask = head_mask[:, None] & j_mask[None, :]
    if NEOX:  # pairs (j, j + rot_dim/2)
        first, second = offs_j, offs_j + HALF
    else:  # GPT-J style: pairs (2j, 2j + 1)
        first, second = 2 * offs_j, 2 * offs_j + 1
    base = X + t * stride_t + heads[:, None] * HEAD_DIM
    x1 = tl.load(base + first[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(base + second[None, :], mask=mask, other=0.0).to(tl.float32)
    out_ty = X.dtype.element_ty
    y1 = (x1 * cos[None, :] - x2 * sin[None, :]).to(out_ty)
    y2 = (x2 * cos[None, :] + x1 * sin[None, :]).to(out_ty)
    tl.store(base + first[None, :], y1, mask=mask)
    tl.store(base + second[None, :], y2, mask=mask)
    if STORE:
        dst = Dst + heads[:, None] * HEAD_DIM
        tl.store(dst + first[None, :], y1, mask=mask)
        tl.store(dst + second[None, :], y2, mask=mask)
        if PASS > 0:  # partial rotary: the tail dims are copied as they are
            offs_p = 2 * HALF + tl.arange(0, BLOCK_PASS)
            p_mask = head_mask[:, None] & (offs_p < HEAD_DIM)[None, :]
            tail = tl.load(base + offs_p[None, :], mask=p_mask, other=0.0)
            tl.store(dst + offs_p[None, :], tail, mask=p_mask)


@triton.jit
def _rotary_kernel(
    Positions, Q, K, Cache, stride_q, stride_k, stride_cache,
    V, Loc, K_buf, V_buf, stride_v, stride_kbuf, stride_vbuf,
    NUM_Q_HEADS: tl.constexpr, NUM_K_HEADS: tl.constexpr, BLOCK_Q_HEADS: tl.constexpr,
    BLOCK_K_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
    NEOX: tl.constexpr, STORE: tl.constexpr, PASS: tl.constexpr, BLOCK_PASS: tl.constexpr,
    V_WIDTH: tl.constexpr, BLOCK_V: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(Positions + t).to(tl.int64)
    offs_j = tl.arange(0, BLOCK_HALF)
    j_mask = offs_j < HALF
    cos = tl.load(Cache + pos * stride_cache + offs_j, mask=j_mask, other=0.0).to(tl.float32)
    sin = tl.load(Cache + pos * stride_cache + HALF + offs_j, mask=j_mask, other=0.0).to(tl.float32)
    slot = t
    if STORE:
        slot = tl.load(Loc + t).to(tl.int64)
    _rotate_heads(Q, stride_q, t, cos, sin, offs_j, j_mask, Q, NUM_Q_HEADS, BLOCK_Q_HEADS, HEAD_DIM, HALF,
                  NEOX, False, PASS, BLOCK_PASS)
    _rotate_heads(K, stride_k, t, cos, sin, offs_j, j_mask, K_buf + slot * stride_kbuf, NUM_K_HEADS,
                  BLOCK_K_HEADS, HEAD_DIM, HALF, NEOX, STORE, PASS, BLOCK_PASS)
    if STORE:
        offs_v = tl.arange(0, BLOCK_V)
        v_mask = offs_v < V_WIDTH
        v = tl.load(V + t * stride_v + offs_v, mask=v_mask, other=0.0)
        tl.store(V_buf + slot * stride_vbuf + offs_v, v, mask=v_mask)


def _check_rotary_args(q: torch.Tensor, k: torch.Tensor, cos_sin_cache: torch.Tensor, head_dim: int) -> int:
    rot_dim = cos_sin_cache.shape[-1]
    if rot_dim > head_dim or rot_dim % 2:
        raise ValueError(f"cos_sin_cache width {rot_dim} must be even and <= head_dim {head_dim}")
    for name, t in (("q", q), ("k", k), ("cos_sin_cache", cos_sin_cache)):
        if t.dim() != 2 or t.stride(-1) != 1:
            raise ValueError(f"{name} must be 2-D with a contiguous last dim, got shape {list(t.shape)} strides {t.stride()}")
    if q.shape[1] % head_dim or k.shape[1] % head_dim:
        raise ValueError(f"q/k widths ({q.shape[1]}, {k.shape[1]}) must be multiples of head_dim {head_dim}")
    return rot_dim


def _check_kv_store(k: torch.Tensor, v: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                    out_loc: torch.Tensor) -> None:
    if v.dim() != 2 or v.stride(-1) != 1 or v.shape[0] != k.shape[0]:
        raise ValueError(f"v must be 2-D [{k.shape[0]}, KVH * Dv] with a contiguous last dim, got {list(v.shape)}")
    for name, buf, width in (("k_buffer", k_buffer, k.shape[1]), ("v_buffer", v_buffer, v.shape[1])):
        if not buf.is_contiguous() or math.prod(buf.shape[1:]) != width:
            raise ValueError(f"{name} must be a contiguous [slots, ...] pool with {width} values per slot, "
                             f"got {list(buf.shape)}")
        if buf.dtype != k.dtype:
            raise ValueError(f"{name} is {buf.dtype} but k/v are {k.dtype}; cast first or use set_kv_buffer")
    if out_loc.shape != (k.shape[0],):
        raise ValueError(f"out_loc must be [{k.shape[0]}] (one slot per token), got {list(out_loc.shape)}")


def _launch(positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos_sin_cache: torch.Tensor, head_dim: int,
            is_neox: bool, rot_dim: int, store: Optional[tuple] = None) -> None:
    num_tokens = positions.shape[0]
    if num_tokens == 0:
        return
    v, k_buffer, v_buffer, out_loc = store if store is not None else (q, q, q, positions)
    num_q_heads, num_k_heads = q.shape[1] // head_dim, k.shape[1] // head_dim
    tail = head_dim - rot_dim
    _rotary_kernel[(num_tokens,)](
        positions, q, k, cos_sin_cache, q.stride(0), k.stride(0), cos_sin_cache.stride(0),
        v, out_loc, k_buffer, v_buffer, v.stride(0), k_buffer.stride(0), v_buffer.stride(0),
        NUM_Q_HEADS=num_q_heads, NUM_K_HEADS=num_k_heads,
        BLOCK_Q_HEADS=triton.next_power_of_2(num_q_heads), BLOCK_K_HEADS=triton.next_power_of_2(num_k_heads),
        HEAD_DIM=head_dim, HALF=rot_dim // 2, BLOCK_HALF=triton.next_power_of_2(rot_dim // 2),
        NEOX=is_neox, STORE=store is not None, PASS=tail, BLOCK_PASS=triton.next_power_of_2(max(tail, 1)),
        V_WIDTH=v.shape[1], BLOCK_V=triton.next_power_of_2(v.shape[1]), num_warps=4,
    )


def apply_rotary(
    positions: torch.Tensor,  # [N]
    q: torch.Tensor,  # [N, H * head_dim]
    k: torch.Tensor,  # [N, KVH * head_dim]
    cos_sin_cache: torch.Tensor,  # [max_pos, rot_dim]
    head_dim: int,
    is_neox: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate the first rot_dim dims of every head of q and k in place; returns (q, k)."""
    rot_dim = _check_rotary_args(q, k, cos_sin_cache, head_dim)
    _launch(positions, q, k, cos_sin_cache, head_dim, is_neox, rot_dim)
    return q, k


def rotary_and_store_kv(
    positions: torch.Tensor,  # [N]
    q: torch.Tensor,  # [N, H * head_dim]
    k: torch.Tensor,  # [N, KVH * head_dim]
    v: torch.Tensor,  # [N, KVH * v_head_dim]
    cos_sin_cache: torch.Tensor,  # [max_pos, rot_dim]
    head_dim: int,
    k_buffer: torch.Tensor,  # [slots, KVH, head_dim], k.dtype
    v_buffer: torch.Tensor,  # [slots, KVH, v_head_dim], v.dtype
    out_loc: torch.Tensor,  # [N] slot of each token
    is_neox: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """`apply_rotary`, and k_buffer[out_loc] = rotated k, v_buffer[out_loc] = v, in one launch."""
    rot_dim = _check_rotary_args(q, k, cos_sin_cache, head_dim)
    _check_kv_store(k, v, k_buffer, v_buffer, out_loc)
    _launch(positions, q, k, cos_sin_cache, head_dim, is_neox, rot_dim, (v, k_buffer, v_buffer, out_loc))
    return q, k
