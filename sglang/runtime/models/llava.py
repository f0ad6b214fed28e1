"""LLaVA (1.5): a CLIP/SigLIP vision tower, a two-layer projector into the text embedding space,
and one of our Llama / Mistral / Qwen2 language models.

An image is one tile; its encoder rows are the selected hidden states of the tower (without the
class token under the "default" feature strategy) through the projector. LLaVA-NeXT (llava_next.py)
changes only how an image's tiles become rows.

Checkpoints come in two layouts, both loaded here: the original ("language_model.model.*",
"language_model.lm_head.*", "vision_tower.vision_model.*", "multi_modal_projector.*") and
transformers 5's ("model.language_model.*", "lm_head.*", "model.vision_tower.*",
"model.multi_modal_projector.*").
"""

from __future__ import annotations

import copy
from typing import Iterable, List, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.linear import ColumnParallelLinear, RowParallelLinear
from sglang.runtime.models.clip_vision import VisionTower, vision_activation
from sglang.runtime.models.registry import get_model_class, is_supported
from sglang.runtime.models.vision_language import VisionLanguageModel, checkpoint_name
from sglang.runtime.models.weight_utils import load_named_weights
from sglang.runtime.multimodal.inputs import MultimodalItem

# Language models a LLaVA checkpoint may carry, by text_config.model_type.
TEXT_MODELS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}

# LLaVA-NeXT's newline row in the transformers-5 layout (the shared renames cover the rest).
_RENAMES = (("model.image_newline", "image_newline"),)
FEATURE_STRATEGIES = ("default", "full")


def text_model_class(text_config: PretrainedConfig) -> type:
    """Our CausalLM class for a VLM's text_config (its architectures entry, else its model_type)."""
    for arch in getattr(text_config, "architectures", None) or []:
        if is_supported(arch):
            return get_model_class(arch)
    model_type = getattr(text_config, "model_type", None)
    if model_type not in TEXT_MODELS:
        raise ValueError(f"LLaVA language model {model_type!r} is not supported; text_config.model_type "
                         f"must be one of {sorted(TEXT_MODELS)}")
    return get_model_class(TEXT_MODELS[model_type])


def language_config(config: PretrainedConfig) -> PretrainedConfig:
    """The text config our language model is built from. Whether lm_head shares the embedding is
    the outer config's call (transformers ties by it: LLaVA-NeXT over Qwen2 keeps its own lm_head
    although the Qwen2 text config says tied)."""
    text_config = copy.copy(config.text_config)
    text_config.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", text_config.tie_word_embeddings))
    return text_config



class LlavaProjector(nn.Module):
    def __init__(self, config: PretrainedConfig, vision_width: int):
        super().__init__()
        text_hidden = config.text_config.hidden_size
        bias = bool(getattr(config, "multimodal_projector_bias", True))
        self.linear_1 = ColumnParallelLinear(vision_width, text_hidden, bias=bias)
        self.act = vision_activation(getattr(config, "projector_hidden_act", "gelu"))
        self.linear_2 = RowParallelLinear(text_hidden, text_hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaForConditionalGeneration(VisionLanguageModel):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.strategy = getattr(config, "vision_feature_select_strategy", "default")
        if self.strategy not in FEATURE_STRATEGIES:
            raise ValueError(f"vision_feature_select_strategy {self.strategy!r} is not supported; use "
                             f"one of {FEATURE_STRATEGIES}")
        self.language_model = text_model_class(config.text_config)(language_config(config))
        self.vision_tower = VisionTower(config.vision_config, getattr(config, "vision_feature_layer", -2))
        width = config.vision_config.hidden_size * len(self.vision_tower.feature_indices)
        self.multi_modal_projector = LlavaProjector(config, width)

    def image_features(self, tiles: torch.Tensor) -> torch.Tensor:
        """[tiles, 3, S, S] -> [tiles, rows per tile, text hidden]."""
        states = self.vision_tower(tiles)
        if self.strategy == "default":  # drop the first token (CLIP's class token)
            states = states[:, 1:]
        return self.multi_modal_projector(states)

    def item_rows(self, item: MultimodalItem, tile_features: torch.Tensor) -> torch.Tensor:
        """The item's encoder rows from its tiles' features (LLaVA: its one tile's rows)."""
        return tile_features.reshape(-1, tile_features.shape[-1])

    def encode_multimodal(self, items: List[MultimodalItem]) -> List[torch.Tensor]:
        tiles = [item.features["pixel_values"] for item in items]
        for item, t in zip(items, tiles):
            if t.dim() != 4:
                raise ValueError(f"an image's pixel_values must be [tiles, channels, height, width], got "
                                 f"{tuple(t.shape)} for the image at prompt position {item.offset}")
        features = self.image_features(torch.cat(tiles))  # one tower pass for every tile of the batch
        counts = [t.shape[0] for t in tiles]
        return [self.item_rows(item, f) for item, f in zip(items, features.split(counts))]

    def skip_weight(self, name: str) -> bool:
        if name.startswith("language_model."):
            return self.language_model.skip_weight(name[len("language_model."):])
        if name.startswith("vision_tower."):
            return not self.vision_tower.uses_weight(name[len("vision_tower."):])
        return False

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        # One streaming pass: the language model's q/k/v and gate/up mappings also fuse the
        # tower's q/k/v (the same ".q_proj" -> ".qkv_proj" names).
        load_named_weights(self, ((checkpoint_name(n, _RENAMES), t) for n, t in weights),
                           self.language_model.stacked_params, skip=self.skip_weight)
