"""EAGLE draft heads for Llama-family targets, in their published checkpoint layouts.

A draft head predicts the target's next feature from (the next token's embedding, the current
feature), with one decoder layer; logits come from a vocabulary head. Its KV lives in a pool
indexed by the target's KV slots (runtime/speculative/eagle_draft.py).

- EAGLE / EAGLE-2 (`LlamaForCausalLMEagle`; the checkpoints say "LlamaForCausalLM", the draft
  runner renames it): feature = the target's final (normed) hidden state; the layer input is
  fc(cat(embed, feature)); layer 0 has no input norm; the output hidden state (no final norm) is
  both the next feature and what the target's lm_head scores.
- EAGLE-3 (`LlamaForCausalLMEagle3`): feature = the target's residual stream entering three
  layers (low, middle, high), fused by fc from 3H to H on the first step; the layer's attention
  reads cat(input_layernorm(embed), hidden_norm(feature)) (2H wide); logits = lm_head(norm(h))
  over a reduced draft vocabulary whose ids map to the target's by `d2t` (target = d + d2t[d]).

Tensors the head does not ship (the embedding, EAGLE-1's lm_head) are the target's, bound after
loading (`bind_target`).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.distributed.lazy_weight import materialize
from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.layers.linear import QKVParallelLinear
from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.llama import (STACKED_PARAMS, LlamaAttention, LlamaMLP, head_dim_of, num_kv_heads_of,
                                         rope_for_config)
from sglang.runtime.models.weight_utils import load_named_weights


def eagle3_target_layers(config: PretrainedConfig, num_target_layers: int) -> Tuple[int, ...]:
    """Target layers whose input residual stream EAGLE-3 reads (low, middle, high): the config's
    `eagle_aux_hidden_state_layer_ids` when given, else (2, L // 2, L - 3)."""
    explicit = getattr(config, "eagle_aux_hidden_state_layer_ids", None)
    eagle_config = getattr(config, "eagle_config", None)
    if explicit is None and isinstance(eagle_config, dict):
        explicit = eagle_config.get("eagle_aux_hidden_state_layer_ids")
    if explicit:
        if len(explicit) != 3:
            raise ValueError(f"EAGLE-3 heads fuse three target layers; eagle_aux_hidden_state_layer_ids is {explicit}")
        return tuple(int(i) for i in explicit)
    n = num_target_layers
    return tuple(min(max(i, 0), n - 1) for i in (2, n // 2, n - 3))  # clamped for tiny targets


def _strip_prefix(name: str) -> str:
    return name[len("model."):] if name.startswith("model.") else name


class _EagleBase(nn.Module):
    """What both heads share: the optional own embedding / lm_head, loading, binding."""

    is_eagle_draft = True

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.embed_tokens: Optional[VocabParallelEmbedding] = VocabParallelEmbedding(config.vocab_size,
                                                                                    config.hidden_size)
        self.rotary_emb = rope_for_config(config)
        self._shared_embed: Optional[VocabParallelEmbedding] = None
        self._shared_head: Optional[VocabParallelEmbedding] = None
        self.loaded = False  # set by load_weights

    # tensors the checkpoint may leave to the target
    optional_tensors: Tuple[str, ...] = ("embed_tokens.weight",)

    @property
    def graph_feature_width(self) -> int:
        """Feature width of a decode row (the head's own hidden state): what CUDA graphs hold."""
        return self.config.hidden_size

    def target_feature_layers(self, num_target_layers: int) -> Optional[Tuple[int, ...]]:
        """Target layers whose input stream is the feature (None: the final normed hidden)."""
        return None

    def bind_target(self, target: nn.Module) -> None:
        """Share the target's embedding (and lm_head) where the checkpoint has none. Dummy heads
        (no checkpoint read) share what published checkpoints leave out."""
        if not self.loaded:
            self.drop_unshipped(set())
        if self.embed_tokens is None:
            self._shared_embed = target.model.embed_tokens
        if self.uses_target_head():
            self._shared_head = target.lm_head

    def uses_target_head(self) -> bool:
        return False

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return (self.embed_tokens or self._shared_embed)(input_ids)

    def drop_unshipped(self, names: set) -> None:
        """Before loading: modules whose tensors the checkpoint lacks come from the target."""
        if "embed_tokens.weight" not in names:
            self.embed_tokens = None

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        items: List[Tuple[str, torch.Tensor]] = []
        for name, tensor in weights:
            name = _strip_prefix(name)
            if "rotary_emb." in name:
                continue
            if not self.load_buffer(name, tensor):
                items.append((name, tensor))
        self.drop_unshipped({n for n, _ in items})
        load_named_weights(self, items, STACKED_PARAMS)
        self.loaded = True

    def load_buffer(self, name: str, tensor: torch.Tensor) -> bool:
        return False

    def draft_ids_to_target(self, ids: torch.Tensor) -> torch.Tensor:
        return ids


class LlamaForCausalLMEagle(_EagleBase):
    """EAGLE / EAGLE-2 head: fc(cat(embed, feature)) -> one Llama layer without its input norm."""

    optional_tensors = ("embed_tokens.weight", "lm_head.weight")

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        h = config.hidden_size
        self.fc = nn.Linear(2 * h, h, bias=bool(getattr(config, "bias", False)))
        self.layers = nn.ModuleList([_EagleLayer(config, 0, self.rotary_emb)])
        self.lm_head: Optional[ParallelLMHead] = ParallelLMHead(config.vocab_size, h)

    def uses_target_head(self) -> bool:
        return self.lm_head is None

    def drop_unshipped(self, names: set) -> None:
        super().drop_unshipped(names)
        if "lm_head.weight" not in names:
            self.lm_head = None

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        x = self.fc(torch.cat([self.embed(input_ids), forward_batch.spec_features.to(self.fc.weight.dtype)], -1))
        residual = None
        for layer in self.layers:
            x, residual = layer(positions, x, forward_batch, residual)
        hidden = x + residual
        return _draft_output(hidden, forward_batch, lambda h: (self.lm_head or self._shared_head).project(h))


class _EagleLayer(nn.Module):
    """A Llama decoder layer; the first one of an EAGLE-1 head has no input norm."""

    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb):
        super().__init__()
        bias = bool(getattr(config, "attention_bias", False))
        self.self_attn = LlamaAttention(config, layer_id, rotary_emb, qkv_bias=bias, o_bias=bias)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps) if layer_id > 0 else None
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, positions, x, forward_batch, residual):
        if residual is None:
            residual = x
            h = self.input_layernorm(x) if self.input_layernorm is not None else x
        else:
            h, residual = self.input_layernorm(x, residual)
        h = self.self_attn(positions, h, forward_batch)
        h, residual = self.post_attention_layernorm(h, residual)
        return self.mlp(h), residual


class LlamaForCausalLMEagle3(_EagleBase):
    """EAGLE-3 head: fc(3H -> H) over three target streams, a 2H-wide attention input, its own norm
    and draft-vocabulary lm_head."""

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        h = config.hidden_size
        target_h = getattr(config, "target_hidden_size", None) or h
        self.fc = nn.Linear(3 * target_h, h, bias=False)
        self.midlayer = _Eagle3Layer(config, self.rotary_emb)
        self.norm = RMSNorm(h, eps=config.rms_norm_eps)
        draft_vocab = getattr(config, "draft_vocab_size", None) or config.vocab_size
        self.lm_head = ParallelLMHead(draft_vocab, h)
        self.output_vocab_size = draft_vocab  # logits width (CUDA-graph buffers)
        self.register_buffer("d2t", torch.zeros(draft_vocab, dtype=torch.int64), persistent=False)
        self.has_d2t = False

    def target_feature_layers(self, num_target_layers: int) -> Tuple[int, ...]:
        return eagle3_target_layers(self.config, num_target_layers)

    def load_buffer(self, name: str, tensor: torch.Tensor) -> bool:
        if name == "t2d":
            return True  # the inverse map; d2t says everything
        if name != "d2t":
            return False
        tensor = materialize(tensor)
        if tuple(tensor.shape) != tuple(self.d2t.shape):
            raise ValueError(f"EAGLE-3 checkpoint tensor 'd2t' has shape {tuple(tensor.shape)}, expected "
                             f"({self.d2t.shape[0]},) = draft_vocab_size")
        self.d2t.copy_(tensor.to(torch.int64))
        self.has_d2t = True
        return True

    def draft_ids_to_target(self, ids: torch.Tensor) -> torch.Tensor:
        return ids + self.d2t[ids] if self.has_d2t else ids

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        feats = forward_batch.spec_features.to(self.fc.weight.dtype)
        if feats.shape[-1] != self.config.hidden_size:  # the target's three streams: fuse them
            feats = self.fc(feats)
        hidden = self.midlayer(positions, self.embed(input_ids), feats, forward_batch)
        return _draft_output(hidden, forward_batch, lambda h: self.lm_head.project(self.norm(h)))


class _Eagle3Layer(nn.Module):
    def __init__(self, config: PretrainedConfig, rotary):
        super().__init__()
        h = config.hidden_size
        bias = bool(getattr(config, "attention_bias", False))
        self.self_attn = LlamaAttention(config, 0, rotary, qkv_bias=bias, o_bias=bias)
        # The attention reads the embedding and the feature side by side.
        self.self_attn.qkv_proj = QKVParallelLinear(2 * h, head_dim_of(config), config.num_attention_heads,
                                                    num_kv_heads_of(config), bias=bias)
        self.mlp = LlamaMLP(h, config.intermediate_size, config.hidden_act)
        self.input_layernorm = RMSNorm(h, eps=config.rms_norm_eps)
        self.hidden_norm = RMSNorm(h, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, eps=config.rms_norm_eps)

    def forward(self, positions, embeds, feats, forward_batch):
        residual = feats
        x = torch.cat([self.input_layernorm(embeds), self.hidden_norm(feats)], dim=-1)
        h = self.self_attn(positions, x, forward_batch)
        h, residual = self.post_attention_layernorm(h, residual)
        return self.mlp(h) + residual


def _draft_output(hidden: torch.Tensor, fb: ForwardBatch, score) -> LogitsProcessorOutput:
    """Logits and hidden state at each segment's last token (extend) or every row (decode)."""
    if not fb.forward_mode.is_decode():
        hidden = hidden[fb.last_token_indices()]
    return LogitsProcessorOutput(next_token_logits=score(hidden).float(), hidden_states=hidden)
