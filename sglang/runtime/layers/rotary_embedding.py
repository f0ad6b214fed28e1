"""Rotary position embedding (neox "rotate half" layout) with the scaling variants HF configs use.

Each variant only changes the rotation frequencies (and, for YaRN, a magnitude factor), so they
all reduce to one cos/sin table indexed by absolute position, computed once in float32 and kept
in the model dtype (which is what transformers multiplies with).

Dynamic NTK is position-dependent in transformers: a step whose sequence has grown to n > L tokens
uses a base stretched for n. Under incremental decoding every token is therefore rotated with the
base of its own position + 1, so our table does exactly that per position; prompts within the
original context are unaffected, which is where the scaling is a no-op.

LongRoPE (Phi-3 128k, Phi-3.5) is position-dependent the same way: transformers rotates a step
with the long factors once its sequence exceeds the original context, so under incremental
decoding position p uses the long factors iff p + 1 > original_max_position_embeddings, and our
table does exactly that per position. The one divergence: a single prompt longer than the
original context is rotated by transformers with the long factors at *every* position (its
sequence is long), here with the short ones up to the boundary.

On CUDA (with Triton) the rotation runs our in-place kernel (`sglang.kernels.rotary`) over a
float32 [positions, rotary_dim] table (cos | sin) built from the same angles: q and k are then
rotated where they lie (views into the fused qkv output), not copied.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from sglang.kernels import use_triton

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")


# ---------------------------------------------------------------- config reading


def rope_params_from_config(config: Any) -> tuple[float, Optional[dict]]:
    """(rope_theta, scaling dict or None) from `config.rope_parameters` (transformers 5) or the
    older `rope_theta` + `rope_scaling` fields. The scaling dict always carries `rope_type`."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and params:
        theta = params.get("rope_theta", getattr(config, "rope_theta", None))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = getattr(config, "rope_theta", None)
        scaling = dict(getattr(config, "rope_scaling", None) or {})
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    theta = 10000.0 if theta is None else float(theta)
    if rope_type == "mrope":  # older Qwen2-VL configs: M-RoPE over default frequencies
        rope_type = "default"
    if rope_type == "default":
        sections = scaling.get("mrope_section")
        return theta, ({"rope_type": "default", "mrope_section": list(sections)} if sections else None)
    scaling["rope_type"] = rope_type
    if rope_type in ("yarn", "llama3", "longrope"):
        # Phi-3 keeps the pretraining length beside rope_scaling in older configs.
        scaling.setdefault("original_max_position_embeddings",
                           getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings)
    if rope_type == "longrope" and scaling.get("factor") is None:
        scaling["factor"] = config.max_position_embeddings / scaling["original_max_position_embeddings"]
    if rope_type == "yarn" and scaling.get("factor") is None:
        scaling["factor"] = config.max_position_embeddings / scaling["original_max_position_embeddings"]
    return theta, scaling


def rotary_dim_from_config(config: Any, head_dim: int) -> int:
    params = getattr(config, "rope_parameters", None) or {}
    factor = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0
    return int(head_dim * factor)


# ---------------------------------------------------------------- frequency variants


def default_inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    return 1.0 / (base**exponents)


def llama3_inv_freq(rotary_dim: int, base: float, scaling: dict) -> torch.Tensor:
    """Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth blend between."""
    inv_freq = default_inv_freq(rotary_dim, base)
    factor = scaling["factor"]
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, blended, scaled)


def _yarn_correction_dim(rotations: float, dim: int, base: float, max_pos: int) -> float:
    """Dimension index whose wavelength completes `rotations` turns over `max_pos` positions."""
    return (dim * math.log(max_pos / (rotations * 2 * math.pi))) / (2 * math.log(base))


def yarn_inv_freq(rotary_dim: int, base: float, scaling: dict) -> torch.Tensor:
    """YaRN: interpolate low frequencies by `factor`, keep high ones, linear ramp in between."""
    factor = scaling["factor"]
    orig = scaling["original_max_position_embeddings"]
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1
    low = _yarn_correction_dim(beta_fast, rotary_dim, base, orig)
    high = _yarn_correction_dim(beta_slow, rotary_dim, base, orig)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(rotary_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim)
    keep = 1 - ramp  # weight of the extrapolated (unscaled) frequency
    return (1.0 / (factor * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep


def yarn_attention_factor(scaling: dict) -> float:
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    factor, m, m_all = scaling["factor"], scaling.get("mscale"), scaling.get("mscale_all_dim")
    if m and m_all:
        return mscale(factor, m) / mscale(factor, m_all)
    return mscale(factor)


def longrope_angles(positions: torch.Tensor, rotary_dim: int, base: float, scaling: dict) -> torch.Tensor:
    """Angles [P, rotary_dim/2]: frequencies divided by the short factors, or by the long ones
    at positions p with p + 1 > original_max_position_embeddings."""
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    short = 1.0 / (torch.tensor(scaling["short_factor"], dtype=torch.float32) * base**exponents)
    long = 1.0 / (torch.tensor(scaling["long_factor"], dtype=torch.float32) * base**exponents)
    is_long = (positions + 1 > scaling["original_max_position_embeddings"])[:, None]
    return positions.float()[:, None] * torch.where(is_long, long[None, :], short[None, :])


def longrope_attention_factor(scaling: dict) -> float:
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])
    factor = float(scaling["factor"])
    orig = scaling["original_max_position_embeddings"]
    return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))


def dynamic_ntk_angles(positions: torch.Tensor, rotary_dim: int, base: float, factor: float,
                       max_position: int) -> torch.Tensor:
    """Angles [P, rotary_dim/2] where position p >= max_position uses the NTK base for p + 1 tokens."""
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    seq_len = torch.clamp(positions.float() + 1, min=max_position)
    stretch = (factor * seq_len / max_position - (factor - 1)) ** (rotary_dim / (rotary_dim - 2))
    bases = base * stretch  # [P]; equals `base` inside the original context
    inv_freq = 1.0 / (bases[:, None] ** exponents[None, :])
    return positions.float()[:, None] * inv_freq


# ---------------------------------------------------------------- application


def apply_rotary_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2 * cos.shape[-1] dims of x [T, heads, head_size] (neox layout).

    cos/sin: [T, rotary_dim / 2]. Dims beyond rotary_dim pass through unchanged."""
    half = cos.shape[-1]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    c, s = cos[:, None, :], sin[:, None, :]
    rotated = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    if 2 * half == x.shape[-1]:
        return rotated
    return torch.cat((rotated, x[..., 2 * half :]), dim=-1)


class RotaryEmbedding(nn.Module):
    """Holds the cos/sin table and rotates q/k given absolute positions."""

    # The C++ CPU kernels module, set by `cpu_kernels.apply_cpu_kernels` (None: torch ops).
    cpu_ops = None

    def __init__(self, head_size: int, rotary_dim: int, max_position: int, base: float,
                 rope_scaling: Optional[dict], dtype: torch.dtype):
        super().__init__()
        if rotary_dim > head_size or rotary_dim % 2:
            raise ValueError(f"rotary_dim={rotary_dim} must be even and <= head_size={head_size}")
        self.head_size, self.rotary_dim, self.base = head_size, rotary_dim, base
        self.scaling = dict(rope_scaling or {"rope_type": "default"})
        self.rope_type = self.scaling.get("rope_type", self.scaling.get("type", "default"))
        if self.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(
                f"unsupported rope scaling type {self.rope_type!r}; supported: {SUPPORTED_ROPE_TYPES}"
            )
        if self.rope_type == "longrope":
            half = rotary_dim // 2
            if any(len(self.scaling.get(key) or ()) != half for key in ("short_factor", "long_factor")):
                raise ValueError(f"longrope needs short_factor and long_factor of {half} values (rotary_dim / 2) "
                                 f"in rope_scaling; the config has {self.scaling}")
        self.max_position = max_position
        self.dtype = dtype
        self.register_buffer("cos_cache", torch.empty(0), persistent=False)
        self.register_buffer("sin_cache", torch.empty(0), persistent=False)
        # The kernel's float32 table; built only on CUDA (see kernel_cache).
        self.register_buffer("cos_sin_cache", torch.empty(0), persistent=False)
        self.ensure_capacity(self._initial_capacity())

    def _initial_capacity(self) -> int:
        factor = float(self.scaling.get("factor", 1.0) or 1.0)
        if self.rope_type in ("linear", "dynamic"):
            return int(self.max_position * factor)
        if self.rope_type == "yarn":
            orig = self.scaling["original_max_position_embeddings"]
            return max(self.max_position, int(orig * factor))
        return self.max_position

    def _angles(self, positions: torch.Tensor) -> torch.Tensor:
        if self.rope_type == "longrope":
            return longrope_angles(positions, self.rotary_dim, self.base, self.scaling)
        if self.rope_type == "dynamic":
            return dynamic_ntk_angles(positions, self.rotary_dim, self.base, self.scaling["factor"],
                                      self.max_position)
        if self.rope_type == "llama3":
            inv_freq = llama3_inv_freq(self.rotary_dim, self.base, self.scaling)
        elif self.rope_type == "yarn":
            inv_freq = yarn_inv_freq(self.rotary_dim, self.base, self.scaling)
        else:
            inv_freq = default_inv_freq(self.rotary_dim, self.base)
            if self.rope_type == "linear":
                inv_freq = inv_freq / self.scaling["factor"]
        return positions.float()[:, None] * inv_freq[None, :]

    def ensure_capacity(self, num_positions: int) -> None:
        """Grow the cos/sin table to cover positions [0, num_positions) (never shrinks)."""
        if self.cos_cache.shape[0] >= num_positions:
            return
        device = self.cos_cache.device
        cos, sin = self._float_tables(num_positions)
        self.cos_cache = cos.to(device=device, dtype=self.dtype)
        self.sin_cache = sin.to(device=device, dtype=self.dtype)
        if device.type == "cuda":
            # Built here, not lazily, so it exists before any CUDA-graph capture.
            self.cos_sin_cache = torch.cat([cos, sin], dim=-1).to(device)

    def _float_tables(self, num_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 cos and sin [num_positions, rotary_dim / 2], YaRN magnitude included."""
        angles = self._angles(torch.arange(num_positions, dtype=torch.int64))
        mag = {"yarn": yarn_attention_factor, "longrope": longrope_attention_factor}.get(
            self.rope_type, lambda scaling: 1.0)(self.scaling)
        return angles.cos() * mag, angles.sin() * mag

    def kernel_cache(self, device: torch.device) -> torch.Tensor:
        """The Triton kernel's [positions, rotary_dim] float32 table on `device` (rebuilt if the
        module moved or grew since it was made)."""
        cache, rows = self.cos_sin_cache, self.cos_cache.shape[0]
        if cache.device != device or cache.shape[0] != rows:
            self.cos_sin_cache = torch.cat(self._float_tables(rows), dim=-1).to(device)
        return self.cos_sin_cache

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """q: [T, heads * head_size], k: [T, kv_heads * head_size]; returns rotated q, k.

        Rotated copies on CPU; on CUDA q and k are rotated in place and returned."""
        if use_triton(q) and q.dim() == 2 and k.dim() == 2:
            from sglang.kernels.rotary import apply_rotary

            return apply_rotary(positions, q, k, self.kernel_cache(q.device), self.head_size, is_neox=True)
        cos, sin = self.cos_cache[positions], self.sin_cache[positions]
        q_rot = apply_rotary_ref(q.view(q.shape[0], -1, self.head_size), cos, sin)
        k_rot = apply_rotary_ref(k.view(k.shape[0], -1, self.head_size), cos, sin)
        return q_rot.reshape(q.shape), k_rot.reshape(k.shape)

    def forward_and_store_kv(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             kv_pool: Any, layer_id: int, out_loc: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`, then the rotated k and v written to layer `layer_id` of `kv_pool` at the
        token slots `out_loc`. On CUDA one kernel does both when the pool holds k's dtype (an
        fp8 pool takes the separate, casting write); on CPU, one C++ call for float32 when the CPU
        path switched it on."""
        k_buf, v_buf = kv_pool.get_key_buffer(layer_id), kv_pool.get_value_buffer(layer_id)
        if use_triton(q) and q.dim() == 2 and k_buf.dtype == k.dtype and v_buf.dtype == v.dtype:
            from sglang.kernels.rotary import rotary_and_store_kv

            return rotary_and_store_kv(positions, q, k, v, self.kernel_cache(q.device), self.head_size,
                                       k_buf, v_buf, out_loc, is_neox=True)
        if self.cpu_ops is not None and q.dim() == 2 and all(
                t.dtype == torch.float32 for t in (q, k, v, k_buf, v_buf, self.cos_cache)):
            # One C++ call: q and k rotated in place (views of the qkv output), then k and v stored.
            self.cpu_ops.rope_store_kv(positions, q, k, v, self.cos_cache, self.sin_cache, self.head_size,
                                       k_buf, v_buf, out_loc, True)
            return q, k
        q, k = self.forward(positions, q, k)
        kv_pool.set_kv_buffer(layer_id, out_loc, k, v)
        return q, k

    def extra_repr(self) -> str:
        return (f"head_size={self.head_size}, rotary_dim={self.rotary_dim}, base={self.base}, "
                f"type={self.rope_type}, positions={self.cos_cache.shape[0]}")


def get_rope(head_size: int, rotary_dim: int, max_position: int, base: float,
             rope_scaling: Optional[dict] = None, dtype: Optional[torch.dtype] = None) -> RotaryEmbedding:
    """Build a rotary embedding; `rope_scaling` is an HF-style dict (`rope_type`, `factor`, ...).
    One with `mrope_section` (Qwen2-VL) is a multimodal rotary embedding."""
    if rope_scaling and rope_scaling.get("mrope_section"):
        from sglang.runtime.layers.mrope import MRotaryEmbedding  # it subclasses RotaryEmbedding

        return MRotaryEmbedding(head_size, rotary_dim, max_position, base, rope_scaling,
                                dtype or torch.get_default_dtype())
    return RotaryEmbedding(head_size, rotary_dim, max_position, base, rope_scaling,
                           dtype or torch.get_default_dtype())
