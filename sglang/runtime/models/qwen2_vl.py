"""Qwen2-VL: a ViT over 14-pixel (x 2-frame) patches with 2D rotary positions, whose 2x2 patch
windows are merged into language-model tokens, beside our Qwen2 language model with M-RoPE.

The vision tower attends within each image and within each video frame only (segments), never
across them, so a batch of items encodes exactly like each item alone. Segments of one length are
stacked and run as one SDPA call, which keeps a batch of same-size images a single kernel launch.
Patch rows arrive in merge-window order (four consecutive rows per merged token), so the merger
is a reshape; the processor (`runtime/multimodal/families/qwen2_vl.py`) writes them that way.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.linear import copy_checked
from sglang.runtime.layers.rotary_embedding import apply_rotary_ref
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM
from sglang.runtime.models.vision_language import VisionLanguageModel
from sglang.runtime.models.weight_utils import load_named_weights
from sglang.runtime.multimodal.inputs import IMAGE, MultimodalItem

GridThw = Tuple[int, int, int]

_ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def vision_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"vision hidden_act {name!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def item_pixels_and_grid(item: MultimodalItem) -> Tuple[torch.Tensor, GridThw]:
    if item.modality == IMAGE:
        pixels, grid = item.features["pixel_values"], item.features["image_grid_thw"]
    else:
        pixels, grid = item.features["pixel_values_videos"], item.features["video_grid_thw"]
    t, h, w = (int(x) for x in grid.reshape(-1))
    return pixels, (t, h, w)


# ---------------------------------------------------------------- positions and attention


def patch_hw_positions(grid: GridThw, merge: int) -> torch.Tensor:
    """[t * h * w, 2] (row, col) of every patch, in merge-window order, repeated per frame."""
    t, h, w = grid
    rows = torch.arange(h).view(h // merge, merge, 1, 1).expand(-1, -1, w // merge, merge)
    cols = torch.arange(w).view(1, 1, w // merge, merge).expand(h // merge, merge, -1, -1)
    # (window row, inner row, window col, inner col) -> window-major, then inner row, inner col
    hw = torch.stack([rows, cols], dim=-1).permute(0, 2, 1, 3, 4).reshape(-1, 2)
    return hw.repeat(t, 1)


def vision_rotary(grids: Sequence[GridThw], merge: int, head_dim: int, theta: float
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin [patches, head_dim / 2]: the first half of the frequencies rotate by the
    patch's row, the second half by its column."""
    quarter = head_dim // 4
    inv_freq = 1.0 / theta ** (torch.arange(0, 2 * quarter, 2, dtype=torch.float32) / (2 * quarter))
    hw = torch.cat([patch_hw_positions(g, merge) for g in grids]).float()
    angles = torch.cat([hw[:, :1] * inv_freq, hw[:, 1:] * inv_freq], dim=-1)
    return angles.cos(), angles.sin()


def frame_lengths(grids: Sequence[GridThw]) -> List[int]:
    """Attention segments of full-attention blocks: one per image and per video frame."""
    return [h * w for t, h, w in grids for _ in range(t)]


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Sequence[int],
                      scale: float) -> torch.Tensor:
    """Bidirectional attention within consecutive segments of q/k/v [N, heads, head_dim]."""
    out = torch.empty_like(q)
    starts_by_len: Dict[int, List[int]] = defaultdict(list)
    start = 0
    for n in lengths:
        if n:
            starts_by_len[n].append(start)
        start += n
    if start != q.shape[0]:
        raise RuntimeError(f"attention segments cover {start} rows of {q.shape[0]}")
    heads, dim = q.shape[1], q.shape[2]
    for n, starts in starts_by_len.items():
        rows = (torch.tensor(starts)[:, None] + torch.arange(n)).reshape(-1).to(q.device)

        def batch(x: torch.Tensor) -> torch.Tensor:
            return x[rows].view(len(starts), n, heads, dim).transpose(1, 2)

        o = F.scaled_dot_product_attention(batch(q), batch(k), batch(v), scale=scale)
        out[rows] = o.transpose(1, 2).reshape(-1, heads, dim)
    return out


# ---------------------------------------------------------------- modules


class PatchEmbed(nn.Module):
    """The checkpoint's Conv3d with kernel == stride: a linear map of each flattened patch."""

    def __init__(self, in_features: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_features, embed_dim, bias=False)
        self.proj.weight.weight_loader = _load_flattened

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels)


def _load_flattened(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
    copy_checked(param.data, loaded.reshape(loaded.shape[0], -1))


class VisionAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], 3, self.num_heads, self.head_dim).unbind(1)
        # Rotary in float32 (as the reference does), back to the model dtype for attention.
        q = apply_rotary_ref(q.float(), cos, sin).to(x.dtype)
        k = apply_rotary_ref(k.float(), cos, sin).to(x.dtype)
        out = segment_attention(q, k, v, lengths, self.head_dim**-0.5)
        return self.proj(out.reshape(x.shape[0], -1))


class VisionMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = vision_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionBlock(nn.Module):
    def __init__(self, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module):
        super().__init__()
        self.norm1, self.norm2, self.attn, self.mlp = norm1, norm2, attn, mlp

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, lengths)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """Each merge window's patch features, normalised and concatenated, through a 2-layer MLP."""

    def __init__(self, context_dim: int, out_dim: int, merge: int, norm: nn.Module):
        super().__init__()
        self.width = context_dim * merge * merge
        self.ln_q = norm
        self.mlp = nn.Sequential(nn.Linear(self.width, self.width), nn.GELU(), nn.Linear(self.width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.ln_q(x).view(-1, self.width))


def vision_rope_theta(vision_config: PretrainedConfig) -> float:
    params = getattr(vision_config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", 10000.0))


class Qwen2VisionTransformer(nn.Module):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        dim, heads = config.embed_dim, config.num_heads
        self.merge = config.spatial_merge_size
        self.head_dim = dim // heads
        self.rope_theta = vision_rope_theta(config)
        patch_in = config.in_channels * config.temporal_patch_size * config.patch_size**2
        self.patch_embed = PatchEmbed(patch_in, dim)
        hidden = int(dim * config.mlp_ratio)
        self.blocks = nn.ModuleList(
            VisionBlock(VisionAttention(dim, heads), VisionMLP(dim, hidden, config.hidden_act),
                        nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6))
            for _ in range(config.depth))
        self.merger = PatchMerger(dim, config.hidden_size, self.merge, nn.LayerNorm(dim, eps=1e-6))

    def rotary(self, grids: Sequence[GridThw], device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        cos, sin = vision_rotary(grids, self.merge, self.head_dim, self.rope_theta)
        return cos.to(device), sin.to(device)

    def forward(self, pixels: torch.Tensor, grids: Sequence[GridThw]) -> torch.Tensor:
        """Merged features [sum(t * h * w) / merge**2, out dim] of the items' patch rows."""
        x = self.patch_embed(pixels)
        cos, sin = self.rotary(grids, x.device)
        lengths = frame_lengths(grids)
        for block in self.blocks:
            x = block(x, cos, sin, lengths)
        return self.merger(x)


# ---------------------------------------------------------------- the model


def language_config(config: PretrainedConfig) -> PretrainedConfig:
    """The text config, carrying the root's tie_word_embeddings (transformers 5 keeps it there)."""
    text = copy.deepcopy(config.get_text_config())
    text.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", False))
    return text


# Checkpoint prefixes (transformers-5 layout first, then the older one) -> (part, our prefix).
_PREFIXES = (
    ("model.language_model.", "text", "model."),
    ("model.visual.", "vision", ""),
    ("visual.", "vision", ""),
    ("lm_head.", "text", "lm_head."),
    ("model.", "text", "model."),
)


def route_checkpoint_name(name: str) -> Tuple[str, str]:
    """('text' | 'vision', name relative to the language model or the vision tower)."""
    for prefix, part, ours in _PREFIXES:
        if name.startswith(prefix):
            return part, ours + name[len(prefix):]
    return "text", name  # the language model's loader reports it as unused


class Qwen2VLForConditionalGeneration(VisionLanguageModel):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.visual = self.build_vision_tower(config.vision_config)
        self.language_model = Qwen2ForCausalLM(language_config(config))

    @staticmethod
    def build_vision_tower(vision_config: PretrainedConfig) -> nn.Module:
        return Qwen2VisionTransformer(vision_config)

    def encode_multimodal(self, items: List[MultimodalItem]) -> List[torch.Tensor]:
        """All items through the tower at once (attention never crosses items), split per item."""
        weight = self.visual.patch_embed.proj.weight
        pixels, grids = zip(*(item_pixels_and_grid(item) for item in items))
        merged = self.visual(torch.cat(pixels).to(device=weight.device, dtype=weight.dtype), list(grids))
        unit = self.visual.merge**2
        return list(torch.split(merged, [t * h * w // unit for t, h, w in grids]))

    def rope_positions(self, positions: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        # Decode steps (and text-only extends) carry plain positions, already shifted by each
        # request's M-RoPE delta: for them the three components are equal.
        mrope = forward_batch.mrope_positions
        return mrope if mrope is not None and forward_batch.forward_mode.is_extend() else positions

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        vision: List[Tuple[str, torch.Tensor]] = []  # small: kept aside while the text streams

        def text_weights() -> Iterable[Tuple[str, torch.Tensor]]:
            for name, tensor in weights:
                part, local = route_checkpoint_name(name)
                if part == "vision":
                    vision.append((local, tensor))
                else:
                    yield local, tensor

        self.language_model.load_weights(text_weights())
        load_named_weights(self.visual, vision)
