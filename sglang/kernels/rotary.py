"""Rotary position embedding applied in place to q and k, one program per token.

The cos/sin cache ([max_pos, rot_dim], cos | sin) is built by the caller (see
`sglang.kernels.ref.rotary.build_cos_sin_cache`): rope scaling changes only that table. q and k
may be strided views of a fused qkv projection; only their last dim must be contiguous.
"""

from __future__ import annotations

from typing import Tuple

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(X, stride_t, t, cos, sin, offs_j, j_mask,
                  NUM_HEADS: tl.constexpr, BLOCK_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
                  HALF: tl.constexpr, NEOX: tl.constexpr):
    heads = tl.arange(0, BLOCK_HEADS)
    mask = (heads < NUM_HEADS)[:, None] & j_mask[None, :]
    if NEOX:  # pairs (j, j + rot_dim/2)
        first, second = offs_j, offs_j + HALF
    else:  # GPT-J style: pairs (2j, 2j + 1)
        first, second = 2 * offs_j, 2 * offs_j + 1
    base = X + t * stride_t + heads[:, None] * HEAD_DIM
    x1 = tl.load(base + first[None, :], mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(base + second[None, :], mask=mask, other=0.0).to(tl.float32)
    out_ty = X.dtype.element_ty
    tl.store(base + first[None, :], (x1 * cos[None, :] - x2 * sin[None, :]).to(out_ty), mask=mask)
    tl.store(base + second[None, :], (x2 * cos[None, :] + x1 * sin[None, :]).to(out_ty), mask=mask)


@triton.jit
def _rotary_kernel(
    Positions, Q, K, Cache, stride_q, stride_k, stride_cache,
    NUM_Q_HEADS: tl.constexpr, NUM_K_HEADS: tl.constexpr, BLOCK_Q_HEADS: tl.constexpr,
    BLOCK_K_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
    NEOX: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(Positions + t).to(tl.int64)
    offs_j = tl.arange(0, BLOCK_HALF)
    j_mask = offs_j < HALF
    cos = tl.load(Cache + pos * stride_cache + offs_j, mask=j_mask, other=0.0).to(tl.float32)
    sin = tl.load(Cache + pos * stride_cache + HALF + offs_j, mask=j_mask, other=0.0).to(tl.float32)
    _rotate_heads(Q, stride_q, t, cos, sin, offs_j, j_mask, NUM_Q_HEADS, BLOCK_Q_HEADS, HEAD_DIM, HALF, NEOX)
    _rotate_heads(K, stride_k, t, cos, sin, offs_j, j_mask, NUM_K_HEADS, BLOCK_K_HEADS, HEAD_DIM, HALF, NEOX)


def apply_rotary(
    positions: torch.Tensor,  # [N]
    q: torch.Tensor,  # [N, H * head_dim]
    k: torch.Tensor,  # [N, KVH * head_dim]
    cos_sin_cache: torch.Tensor,  # [max_pos, rot_dim]
    head_dim: int,
    is_neox: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate the first rot_dim dims of every head of q and k in place; returns (q, k)."""
    rot_dim = cos_sin_cache.shape[-1]
    if rot_dim > head_dim or rot_dim % 2:
        raise ValueError(f"cos_sin_cache width {rot_dim} must be even and <= head_dim {head_dim}")
    for name, t in (("q", q), ("k", k), ("cos_sin_cache", cos_sin_cache)):
        if t.dim() != 2 or t.stride(-1) != 1:
            raise ValueError(f"{name} must be 2-D with a contiguous last dim, got shape {list(t.shape)} strides {t.stride()}")
    if q.shape[1] % head_dim or k.shape[1] % head_dim:
        raise ValueError(f"q/k widths ({q.shape[1]}, {k.shape[1]}) must be multiples of head_dim {head_dim}")
    num_tokens = positions.shape[0]
    if num_tokens == 0:
        return q, k
    num_q_heads, num_k_heads = q.shape[1] // head_dim, k.shape[1] // head_dim
    _rotary_kernel[(num_tokens,)](
        positions, q, k, cos_sin_cache, q.stride(0), k.stride(0), cos_sin_cache.stride(0),
        NUM_Q_HEADS=num_q_heads, NUM_K_HEADS=num_k_heads,
        BLOCK_Q_HEADS=triton.next_power_of_2(num_q_heads), BLOCK_K_HEADS=triton.next_power_of_2(num_k_heads),
        HEAD_DIM=head_dim, HALF=rot_dim // 2, BLOCK_HALF=triton.next_power_of_2(rot_dim // 2),
        NEOX=is_neox, num_warps=4,
    )
    return q, k
