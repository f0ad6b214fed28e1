"""Torch twins of `sglang.kernels.rotary` (`apply_rotary`, `rotary_and_store_kv`), and the cos/sin
cache builder.

The cache is [max_position, rot_dim]: cos of each frequency in the first half, sin in the second.
Rope scaling variants (linear, llama3) only change the inverse frequencies, so the rotation
itself never needs to know about them.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch


def llama3_inv_freq(
    inv_freq: torch.Tensor,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position_embeddings: int,
) -> torch.Tensor:
    """Llama 3 scaling: long wavelengths are divided by `factor`, short ones kept, and the band
    between them interpolated smoothly."""
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, blended)
    return torch.where(wavelen < high_freq_wavelen, inv_freq, out)


def scaled_inv_freq(rot_dim: int, base: float, rope_scaling: Optional[dict]) -> torch.Tensor:
    inv_freq = 1.0 / (base ** (torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim))
    kind = (rope_scaling or {}).get("rope_type", (rope_scaling or {}).get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / rope_scaling["factor"]
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return llama3_inv_freq(inv_freq, *(rope_scaling[k] for k in keys))
    raise ValueError(f"rope scaling type {kind!r} is not supported here; use default, linear or llama3")


def build_cos_sin_cache(
    rot_dim: int,
    max_position: int,
    base: float = 10000.0,
    rope_scaling: Optional[dict] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """[max_position, rot_dim] table (cos | sin), computed in float64 then cast."""
    inv_freq = scaled_inv_freq(rot_dim, base, rope_scaling)
    angles = torch.arange(max_position, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(dtype=dtype, device=device)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox: bool) -> torch.Tensor:
    """x [N, heads, rot_dim] in float; cos/sin [N, 1, rot_dim/2]."""
    if is_neox:  # pairs (i, i + rot_dim/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # GPT-J style: pairs (2i, 2i + 1)
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)


def apply_rotary(
    positions: torch.Tensor,  # [N]
    q: torch.Tensor,  # [N, H * head_dim], last dim contiguous (a view of a fused qkv is fine)
    k: torch.Tensor,  # [N, KVH * head_dim]
    cos_sin_cache: torch.Tensor,  # [max_pos, rot_dim]
    head_dim: int,
    is_neox: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate the first rot_dim dims of every head of q and k in place; returns (q, k)."""
    rot_dim = cos_sin_cache.shape[-1]
    if rot_dim > head_dim or rot_dim % 2:
        raise ValueError(f"cos_sin_cache width {rot_dim} must be even and <= head_dim {head_dim}")
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    cos, sin = cos_sin_cache[positions.long()].to(ct).unsqueeze(1).chunk(2, dim=-1)
    for t in (q, k):
        heads = t.view(t.shape[0], -1, head_dim)
        rotated = _rotate(heads[..., :rot_dim].to(ct), cos, sin, is_neox)
        heads[..., :rot_dim] = rotated.to(t.dtype)
    return q, k


def rotary_and_store_kv(
    positions: torch.Tensor,  # [N]
    q: torch.Tensor,  # [N, H * head_dim]
    k: torch.Tensor,  # [N, KVH * head_dim]
    v: torch.Tensor,  # [N, KVH * v_head_dim]
    cos_sin_cache: torch.Tensor,  # [max_pos, rot_dim]
    head_dim: int,
    k_buffer: torch.Tensor,  # [slots, KVH, head_dim]
    v_buffer: torch.Tensor,  # [slots, KVH, v_head_dim]
    out_loc: torch.Tensor,  # [N]
    is_neox: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """`apply_rotary`, then k_buffer[out_loc] = rotated k and v_buffer[out_loc] = v."""
    apply_rotary(positions, q, k, cos_sin_cache, head_dim, is_neox)
    loc = out_loc.long()
    k_buffer[loc] = k.reshape(k.shape[0], *k_buffer.shape[1:]).to(k_buffer.dtype)
    v_buffer[loc] = v.reshape(v.shape[0], *v_buffer.shape[1:]).to(v_buffer.dtype)
    return q, k
