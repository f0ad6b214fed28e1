"""Qwen2.5-VL: Qwen2-VL's layout with a windowed ViT (RMSNorm, gated MLP) and time-scaled video
positions (the latter live in the processor).

Most blocks attend within square windows of `window_size` pixels (in merged tokens: window_size //
patch_size // spatial_merge_size per side; edge windows are smaller); the blocks listed in
`fullatt_block_indexes` attend over the whole image or frame. Windows are made contiguous by
reordering the merged tokens (four patch rows each) window by window before the blocks, and the
merger's outputs are put back in raster order after them.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.models.qwen2_vl import (
    GridThw,
    PatchEmbed,
    PatchMerger,
    Qwen2VLForConditionalGeneration,
    VisionAttention,
    VisionBlock,
    frame_lengths,
    vision_activation,
    vision_rope_theta,
    vision_rotary,
)


def window_order(grids: Sequence[GridThw], merge: int, window: int) -> Tuple[torch.Tensor, List[int]]:
    """(merged-token order that makes every window contiguous, window lengths in patch rows).

    Windows tile each frame's merged grid from the top left, row of windows by row of windows;
    tokens inside a window keep raster order."""
    order: List[torch.Tensor] = []
    lengths: List[int] = []
    base = 0
    for t, h, w in grids:
        gh, gw = h // merge, w // merge
        for _ in range(t):
            index = torch.arange(base, base + gh * gw).view(gh, gw)
            for r in range(0, gh, window):
                for c in range(0, gw, window):
                    cell = index[r:r + window, c:c + window].reshape(-1)
                    order.append(cell)
                    lengths.append(cell.numel() * merge * merge)
            base += gh * gw
    return torch.cat(order), lengths


class GatedVisionMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.down_proj = nn.Linear(hidden, dim)
        self.act = vision_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Qwen2_5_VisionTransformer(nn.Module):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        dim, heads = config.hidden_size, config.num_heads
        self.merge = config.spatial_merge_size
        self.head_dim = dim // heads
        self.rope_theta = vision_rope_theta(config)
        self.window = config.window_size // config.spatial_merge_size // config.patch_size
        if self.window < 1:
            raise ValueError(f"window_size {config.window_size} is smaller than one merged token "
                             f"({config.spatial_merge_size * config.patch_size} pixels)")
        self.full_attention_blocks = frozenset(config.fullatt_block_indexes)
        patch_in = config.in_channels * config.temporal_patch_size * config.patch_size**2
        self.patch_embed = PatchEmbed(patch_in, dim)
        self.blocks = nn.ModuleList(
            VisionBlock(VisionAttention(dim, heads), GatedVisionMLP(dim, config.intermediate_size, config.hidden_act),
                        RMSNorm(dim, eps=1e-6), RMSNorm(dim, eps=1e-6))
            for _ in range(config.depth))
        self.merger = PatchMerger(dim, config.out_hidden_size, self.merge, RMSNorm(dim, eps=1e-6))

    def forward(self, pixels: torch.Tensor, grids: Sequence[GridThw]) -> torch.Tensor:
        """Merged features [sum(t * h * w) / merge**2, out dim], in the items' raster order."""
        unit = self.merge**2
        order, window_lengths = window_order(grids, self.merge, self.window)
        order = order.to(pixels.device)

        def windowed(x: torch.Tensor) -> torch.Tensor:  # patch rows, merged token by merged token
            return x.view(-1, unit, x.shape[-1])[order].view(-1, x.shape[-1])

        x = windowed(self.patch_embed(pixels))
        cos, sin = vision_rotary(grids, self.merge, self.head_dim, self.rope_theta)
        cos, sin = windowed(cos.to(x.device)), windowed(sin.to(x.device))
        frames = frame_lengths(grids)  # reordering stays inside each frame, so frames stay contiguous
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, frames if i in self.full_attention_blocks else window_lengths)
        merged = self.merger(x)
        return merged[torch.argsort(order)]


class Qwen2_5_VLForConditionalGeneration(Qwen2VLForConditionalGeneration):
    @staticmethod
    def build_vision_tower(vision_config: PretrainedConfig) -> nn.Module:
        return Qwen2_5_VisionTransformer(vision_config)
