"""Causal LMs served as embedding models: the backbone's final (normed) hidden states, pooled.

Two ways in:
- a backbone-only checkpoint (`LlamaModel`, `MistralModel`, `Qwen2Model`: e5-mistral,
  gte-Qwen2), whose tensor names lack the `model.` prefix and which has no LM head;
- any `*ForCausalLM` checkpoint we serve, started with `--is-embedding`: it loads as usual and
  `as_pooling_model` wraps it, dropping its LM head (nothing is sampled).
"""

from __future__ import annotations

import copy
from typing import Iterable, Iterator, Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.layers.pooler import Pooler, PoolingConfig, pooled_output
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.llama import LlamaForCausalLM
from sglang.runtime.models.mistral import MistralForCausalLM
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM


class EmbeddingModel(nn.Module):
    """A causal LM's backbone followed by a pooler."""

    is_pooling_model = True
    supports_cuda_graph = False  # prefill only: no decode step to capture

    def __init__(self, causal: nn.Module, pooling: PoolingConfig = PoolingConfig()):
        super().__init__()
        if not isinstance(getattr(causal, "model", None), nn.Module):
            raise ValueError(f"{type(causal).__name__} has no text backbone (.model) to pool; "
                             f"it cannot run as an embedding model")
        self.causal = causal
        self.pooler = Pooler(pooling)

    def set_pooling(self, pooling: PoolingConfig) -> None:
        self.pooler = Pooler(pooling)

    def drop_lm_head(self) -> None:
        """Free the output projection of an untied checkpoint (a tied one is the embedding)."""
        if not getattr(self.causal, "tie_word_embeddings", True):
            self.causal.lm_head = None

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> LogitsProcessorOutput:
        hidden_states = self.causal.model(input_ids, positions, forward_batch, input_embeds=input_embeds)
        return pooled_output(self.pooler(hidden_states, forward_batch))

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        self.causal.load_weights(weights)


def _with_backbone_prefix(weights: Iterable[Tuple[str, torch.Tensor]]) -> Iterator[Tuple[str, torch.Tensor]]:
    """Backbone-only checkpoints name `layers.0...`; the causal LM's parameters are `model.layers.0...`."""
    for name, tensor in weights:
        yield (name if name.startswith(("model.", "lm_head.")) else f"model.{name}"), tensor


class BackboneEmbeddingModel(EmbeddingModel):
    """Registered for backbone-only architectures; `causal_class` is the family's causal LM."""

    causal_class = LlamaForCausalLM

    def __init__(self, config: PretrainedConfig):
        # Tied: the causal LM then makes no LM head of its own (and skips a stray lm_head.weight).
        config = copy.copy(config)
        config.tie_word_embeddings = True
        super().__init__(self.causal_class(config))

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        self.causal.load_weights(_with_backbone_prefix(weights))


class LlamaModel(BackboneEmbeddingModel):
    """The `LlamaModel` architecture (a backbone-only checkpoint) as an embedding model."""

    causal_class = LlamaForCausalLM


class MistralModel(BackboneEmbeddingModel):
    """The `MistralModel` architecture (a backbone-only checkpoint) as an embedding model."""

    causal_class = MistralForCausalLM


class Qwen2Model(BackboneEmbeddingModel):
    """The `Qwen2Model` architecture (a backbone-only checkpoint) as an embedding model."""

    causal_class = Qwen2ForCausalLM


def as_pooling_model(model: nn.Module, is_embedding: bool, pooling: Optional[PoolingConfig]) -> nn.Module:
    """The model to serve: a pooling model (registered as one, or a causal LM wrapped because of
    `is_embedding`) gets `pooling`; a causal LM without `is_embedding` is returned as is."""
    if not getattr(model, "is_pooling_model", False):
        if not is_embedding:
            return model
        model = EmbeddingModel(model)
        model.drop_lm_head()
    if pooling is not None and hasattr(model, "set_pooling"):
        model.set_pooling(pooling)
    return model
