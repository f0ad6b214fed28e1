"""What every vision-language model shares: a vision encoder beside one of our language models.

A family subclass builds `self.language_model` (a *ForCausalLM of ours) and its vision tower,
implements `encode_multimodal(items)` (one [item.length, hidden] tensor per item) and maps
checkpoint names in `load_weights`. Extend passes embed the text, write encoder rows over the
placeholders (through the encoder cache, see runtime/multimodal/embedding.py) and run the language
model on those embeddings; decode passes are plain language-model steps, so CUDA graphs and the
CPU decode kernels apply unchanged.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import List, Optional, Tuple

import torch
from torch import nn

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.multimodal.embedding import overlapping_pieces, scatter_multimodal
from sglang.runtime.multimodal.encoder_cache import EncoderCache
from sglang.runtime.multimodal.inputs import MultimodalItem


# transformers 5 saves a vision-language model's parts under `model.`; older checkpoints (and most on
# the Hub) do not. Our module tree is the older layout.
NESTED_LAYOUT: Tuple[Tuple[str, str], ...] = (
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
)


def checkpoint_name(name: str, extra: Tuple[Tuple[str, str], ...] = ()) -> str:
    """A checkpoint tensor's name in our module tree (either layout; `extra` renames first)."""
    for prefix, ours in (*extra, *NESTED_LAYOUT):
        if name.startswith(prefix):
            name = ours + name[len(prefix):]
            break
    return name.replace("vision_tower.vision_model.", "vision_tower.", 1)


class VisionLanguageModel(nn.Module):
    is_multimodal = True
    language_model: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self.encoder_cache = EncoderCache()

    @abstractmethod
    def encode_multimodal(self, items: List[MultimodalItem]) -> List[torch.Tensor]:
        """Encoder output of each item, [item.length, text hidden size], in the model's dtype."""

    def rope_positions(self, positions: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        """Positions for the language model's rotary embedding (M-RoPE families override)."""
        return positions

    def input_embeddings(self, input_ids: torch.Tensor, forward_batch: ForwardBatch) -> Optional[torch.Tensor]:
        """Embeddings of an extend pass that covers image/video rows; None when there is none."""
        pieces = overlapping_pieces(forward_batch)
        if not pieces:
            return None
        embeds = self.language_model.model.embed(input_ids)
        return scatter_multimodal(embeds, pieces, self.encode_multimodal, self.encoder_cache)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        embeds = self.input_embeddings(input_ids, forward_batch)
        return self.language_model(input_ids, self.rope_positions(positions, forward_batch), forward_batch,
                                   input_embeds=embeds)
