"""Gemma 3 vision-language model: a SigLIP vision tower, a pooling projector, and our Gemma 3
text model (models/gemma3.py).

An image is one square picture at the tower's size (a pan-and-scan crop is an image of its own).
Its encoder rows: the tower's last hidden states (after SigLIP's post-layernorm), the patch grid
average-pooled to `mm_tokens_per_image` tokens, Gemma-RMS-normalised and multiplied by
`mm_input_projection_weight`. They replace the placeholder embeddings as they are: text rows are
scaled by sqrt(hidden), image rows are not (as in transformers).

During prefill, the tokens of one image attend to each other both ways (text stays causal): the
forward pass sets `extend_visible_until` for the attention backends (multimodal/bidirectional.py),
and the processor marks the request's inputs `bidirectional` so the scheduler never splits an
image across extend passes.

Checkpoints come in two layouts, both loaded here: the original ("language_model.model.*",
"vision_tower.vision_model.*", "multi_modal_projector.*") and transformers 5's
("model.language_model.*", "model.vision_tower.*" with or without "vision_model.",
"model.multi_modal_projector.*", "lm_head.*"); the tied lm_head is skipped.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.layernorm import GemmaRMSNorm
from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.clip_vision import SIGLIP_TYPES, VisionEmbeddings, VisionEncoderLayer
from sglang.runtime.models.gemma3 import Gemma3ForCausalLM
from sglang.runtime.models.vision_language import VisionLanguageModel, checkpoint_name
from sglang.runtime.models.weight_utils import load_named_weights
from sglang.runtime.multimodal.bidirectional import visible_until
from sglang.runtime.multimodal.inputs import MultimodalItem


class SiglipVisionTower(nn.Module):
    """Images [N, 3, S, S] -> last hidden states [N, patches, D] (post-layernorm, no pooling head)."""

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        if getattr(config, "model_type", "") not in SIGLIP_TYPES:
            raise ValueError(f"Gemma 3's vision tower must be SigLIP, got {config.model_type!r}; fix "
                             f"config.json's vision_config")
        self.embeddings = VisionEmbeddings(config, class_token=False)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(VisionEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        weight = self.embeddings.position_embedding.weight
        x = self.embeddings(pixels.to(weight.device, weight.dtype))
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class Gemma3Projector(nn.Module):
    """Patch grid -> `mm_tokens_per_image` rows in the text embedding space."""

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        vision = config.vision_config
        self.grid = vision.image_size // vision.patch_size
        side = math.isqrt(int(config.mm_tokens_per_image))
        if side * side != config.mm_tokens_per_image or side == 0 or self.grid % side:
            raise ValueError(f"mm_tokens_per_image {config.mm_tokens_per_image} must be a square whose side "
                             f"divides the {self.grid}x{self.grid} patch grid; fix config.json")
        self.kernel = self.grid // side
        self.mm_input_projection_weight = nn.Parameter(
            torch.empty(vision.hidden_size, config.text_config.hidden_size), requires_grad=False)
        self.mm_soft_emb_norm = GemmaRMSNorm(vision.hidden_size, eps=vision.layer_norm_eps)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        n, patches, width = states.shape
        grid = states.transpose(1, 2).reshape(n, width, self.grid, self.grid)
        pooled = F.avg_pool2d(grid, self.kernel, self.kernel).flatten(2).transpose(1, 2)
        return torch.matmul(self.mm_soft_emb_norm(pooled), self.mm_input_projection_weight).to(states.dtype)


class Gemma3ForConditionalGeneration(VisionLanguageModel):
    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.language_model = Gemma3ForCausalLM(config.text_config)
        self.vision_tower = SiglipVisionTower(config.vision_config)
        self.multi_modal_projector = Gemma3Projector(config)
        self.tokens_per_image = int(config.mm_tokens_per_image)

    def encode_multimodal(self, items: List[MultimodalItem]) -> List[torch.Tensor]:
        pixels = [item.features["pixel_values"] for item in items]
        for item, p in zip(items, pixels):
            if p.dim() != 4 or p.shape[0] != 1:
                raise ValueError(f"an image's pixel_values must be [1, channels, height, width], got "
                                 f"{tuple(p.shape)} for the image at prompt position {item.offset}")
        rows = self.multi_modal_projector(self.vision_tower(torch.cat(pixels)))  # one tower pass
        return list(rows.unbind(0))

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        # Prefill lets an image's tokens see their whole image (None: no image in this pass).
        forward_batch.extend_visible_until = visible_until(forward_batch)
        return super().forward(input_ids, positions, forward_batch)

    def skip_weight(self, name: str) -> bool:
        if name.startswith("language_model."):
            return self.language_model.skip_weight(name[len("language_model."):])
        return name.startswith("vision_tower.head.")  # SigLIP's pooling head, unused by Gemma 3

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        # One pass: the language model's q/k/v mapping also fuses the tower's q/k/v.
        load_named_weights(self, ((checkpoint_name(n), t) for n, t in weights),
                           self.language_model.stacked_params, skip=self.skip_weight)
