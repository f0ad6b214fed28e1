"""Multimodal rotary embedding (M-RoPE, Qwen2-VL): three position components per token.

The rotary frequencies are split into sections (`mrope_section`, e.g. [16, 24, 24] of a 128-dim
head's 64): section i rotates by component i % 3 of the position, i.e. time, height, width. A token
of text has all three components equal, and then M-RoPE is exactly plain RoPE. So:

- positions [N] (decode steps, text-only batches): the plain path, with its fused CUDA kernel and
  CPU kernels;
- positions [3, N] (extend passes that carry images): cos/sin rows gathered per section in torch,
  the rotation in torch, then the KV write.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from sglang.runtime.layers.rotary_embedding import RotaryEmbedding, apply_rotary_ref


class MRotaryEmbedding(RotaryEmbedding):
    def __init__(self, head_size: int, rotary_dim: int, max_position: int, base: float,
                 rope_scaling: Optional[dict], dtype: torch.dtype):
        scaling = dict(rope_scaling or {})
        sections: Sequence[int] = scaling.pop("mrope_section", None) or ()
        super().__init__(head_size, rotary_dim, max_position, base, scaling or None, dtype)
        if len(sections) == 0 or sum(sections) != rotary_dim // 2:
            raise ValueError(f"mrope_section {list(sections)} must split the {rotary_dim // 2} rotary frequencies "
                             f"of {rotary_dim}-dim rotary heads (its entries must sum to {rotary_dim // 2})")
        self.mrope_section = [int(s) for s in sections]
        # Which position component (0 time, 1 height, 2 width) rotates each frequency.
        component = [i % 3 for i, size in enumerate(self.mrope_section) for _ in range(size)]
        self.register_buffer("component", torch.tensor(component, dtype=torch.int64), persistent=False)

    def _cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [N, rotary_dim / 2] for positions [3, N]."""
        index = self.component.to(positions.device)[None, None, :].expand(1, positions.shape[1], -1)
        cos = self.cos_cache[positions].gather(0, index)[0]  # [3, N, half] -> [N, half]
        sin = self.sin_cache[positions].gather(0, index)[0]
        return cos, sin

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() == 1:
            return super().forward(positions, q, k)
        if positions.dim() != 2 or positions.shape[0] != 3:
            raise ValueError(f"M-RoPE positions must be [N] or [3, N], got {tuple(positions.shape)}")
        cos, sin = self._cos_sin(positions)
        q_rot = apply_rotary_ref(q.reshape(q.shape[0], -1, self.head_size), cos, sin)
        k_rot = apply_rotary_ref(k.reshape(k.shape[0], -1, self.head_size), cos, sin)
        return q_rot.reshape(q.shape), k_rot.reshape(k.shape)

    def forward_and_store_kv(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             kv_pool: Any, layer_id: int, out_loc: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        if positions.dim() == 1:
            return super().forward_and_store_kv(positions, q, k, v, kv_pool, layer_id, out_loc)
        q, k = self.forward(positions, q, k)
        kv_pool.set_kv_buffer(layer_id, out_loc, k, v)
        return q, k

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mrope_section={self.mrope_section}"
