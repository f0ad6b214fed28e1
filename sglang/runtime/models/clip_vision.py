"""CLIP and SigLIP vision transformers as the LLaVA family uses them: image tiles in, the hidden
states of chosen encoder layers out (no pooling head).

Hidden state k is what LLaVA's `vision_feature_layer` indexes: 0 is the embedding output (after
CLIP's pre-layernorm), k the output of encoder layer k; negative k counts from the last layer.
Layers past the deepest selected one never influence the output, so they are not built and their
checkpoint tensors are skipped (LLaVA-1.5 reads layer -2: one of 24 layers less to run).

CLIP: patch conv without bias, a class token, pre-layernorm. SigLIP: patch conv with bias, no class
token, no pre-layernorm. Both: pre-norm encoder layers with biased q/k/v/out projections.
"""

from __future__ import annotations

from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.linear import ColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from sglang.runtime.models.weight_utils import StackedMapping

VISION_STACKED_PARAMS: StackedMapping = (
    (".qkv_proj", ".q_proj", "q"),
    (".qkv_proj", ".k_proj", "k"),
    (".qkv_proj", ".v_proj", "v"),
)
CLIP_TYPES = ("clip_vision_model", "clip")
SIGLIP_TYPES = ("siglip_vision_model", "siglip")


def vision_activation(name: str):
    """The MLP activation a vision config names."""
    table = {
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
        "gelu": F.gelu,
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    }
    if name not in table:
        raise ValueError(f"vision hidden_act {name!r} is not supported; use one of {sorted(table)}")
    return table[name]


def feature_layer_indices(feature_layer: Union[int, Sequence[int]], num_layers: int) -> List[int]:
    """`vision_feature_layer` (an index or a list, negatives from the end) as hidden-state indices
    0..num_layers."""
    layers = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)
    out = []
    for k in layers:
        idx = k + num_layers + 1 if k < 0 else k
        if not 0 <= idx <= num_layers:
            raise ValueError(f"vision_feature_layer {k} is outside the vision tower's hidden states "
                             f"(-{num_layers + 1}..{num_layers}); fix config.json")
        out.append(idx)
    return out


class VisionAttention(nn.Module):
    """Bidirectional multi-head attention over the tokens of each tile."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"vision hidden_size {hidden} is not divisible by num_attention_heads {heads}")
        self.head_dim = hidden // heads
        self.qkv_proj = QKVParallelLinear(hidden, self.head_dim, heads, heads, bias=True)
        self.out_proj = RowParallelLinear(hidden, hidden, bias=True)
        self.heads = self.qkv_proj.num_heads  # this tensor-parallel rank's share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tiles, tokens, _ = x.shape
        q, k, v = self.qkv_proj(x).view(tiles, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim), no mask
        return self.out_proj(out.transpose(1, 2).reshape(tiles, tokens, self.heads * self.head_dim))


class VisionMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int, act: str):
        super().__init__()
        self.fc1 = ColumnParallelLinear(hidden, intermediate, bias=True)
        self.fc2 = RowParallelLinear(intermediate, hidden, bias=True)
        self.act = vision_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionEncoderLayer(nn.Module):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = VisionAttention(config.hidden_size, config.num_attention_heads)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config.hidden_size, config.intermediate_size, config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionEmbeddings(nn.Module):
    """Non-overlapping patches through one linear map (the patch conv's weight, flattened), plus
    the class token (CLIP) and learned absolute positions."""

    def __init__(self, config: PretrainedConfig, class_token: bool):
        super().__init__()
        hidden, patch, channels = config.hidden_size, config.patch_size, getattr(config, "num_channels", 3)
        self.image_size, self.patch_size = config.image_size, patch
        self.patch_embedding = nn.Module()  # keeps the checkpoint's "patch_embedding.weight" name
        self.patch_embedding.weight = nn.Parameter(torch.empty(hidden, channels, patch, patch), requires_grad=False)
        if class_token:
            self.class_embedding = nn.Parameter(torch.empty(hidden), requires_grad=False)
        else:  # SigLIP's conv has a bias instead
            self.patch_embedding.bias = nn.Parameter(torch.empty(hidden), requires_grad=False)
        self.class_token = class_token
        positions = (config.image_size // patch) ** 2 + int(class_token)
        self.position_embedding = nn.Embedding(positions, hidden)
        self.position_embedding.weight.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tiles, channels, height, width = pixels.shape
        if height != self.image_size or width != self.image_size:
            raise ValueError(f"the vision tower takes {self.image_size}x{self.image_size} tiles, got "
                             f"{height}x{width}; the image processor's crop_size must match the model")
        p = self.patch_size
        # [tiles, C, gh, p, gw, p] -> [tiles, gh * gw, C * p * p] in the conv weight's (C, kh, kw) order
        patches = pixels.reshape(tiles, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(tiles, (height // p) * (width // p), channels * p * p)
        weight = self.patch_embedding.weight
        x = F.linear(patches, weight.reshape(weight.shape[0], -1), getattr(self.patch_embedding, "bias", None))
        if self.class_token:
            x = torch.cat([self.class_embedding.expand(tiles, 1, -1), x], dim=1)
        return x + self.position_embedding.weight


class VisionTower(nn.Module):
    """Tiles [N, 3, S, S] -> the selected hidden states concatenated on features [N, tokens, D * k]."""

    def __init__(self, config: PretrainedConfig, feature_layer: Union[int, Sequence[int]]):
        super().__init__()
        model_type = getattr(config, "model_type", "")
        if model_type not in CLIP_TYPES + SIGLIP_TYPES:
            raise ValueError(f"vision tower {model_type!r} is not supported for LLaVA; use a CLIP or SigLIP tower")
        clip = model_type in CLIP_TYPES
        self.feature_indices = feature_layer_indices(feature_layer, config.num_hidden_layers)
        self.embeddings = VisionEmbeddings(config, class_token=clip)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if clip else None
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(VisionEncoderLayer(config) for _ in range(max(self.feature_indices)))
        self.num_config_layers = config.num_hidden_layers
        self.has_class_token = clip

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.position_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embeddings.position_embedding.weight.device

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels.to(self.device, self.dtype))
        if self.pre_layrnorm is not None:
            x = self.pre_layrnorm(x)
        states = [x]
        for layer in self.encoder.layers:
            states.append(layer(states[-1]))
        return torch.cat([states[i] for i in self.feature_indices], dim=-1)

    def uses_weight(self, name: str) -> bool:
        """Whether a tower checkpoint tensor (name relative to the tower) belongs to a built module:
        not the pooling head, not the post-layernorm, not a layer past the deepest selected one."""
        if name.startswith(("post_layernorm.", "head.")):
            return False
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) < len(self.encoder.layers)
        return True
