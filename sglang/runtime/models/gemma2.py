"""Gemma 2: Llama-like blocks with Gemma's differences.

- embeddings scaled by sqrt(hidden_size), the factor rounded to the model dtype first (as HF does);
- RMSNorm with (1 + w) scaling, and norms both before and after attention and the MLP;
- gelu(tanh) gated MLP; attention scaled by query_pre_attn_scalar^-0.5 with tanh soft-capping;
- sliding-window attention on alternate layers (config.layer_types; else even layers slide);
- final logits soft-capped.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.layernorm import GemmaRMSNorm
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.llama import (
    LlamaAttention,
    LlamaForCausalLM,
    LlamaMLP,
    LlamaModel,
    RotaryEmbedding,
    layer_sliding_window,
)


def _hidden_act(config: PretrainedConfig) -> str:
    return getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "gelu_pytorch_tanh")


class Gemma2DecoderLayer(nn.Module):
    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb: RotaryEmbedding):
        super().__init__()
        bias = bool(getattr(config, "attention_bias", False))
        self.self_attn = LlamaAttention(
            config, layer_id, rotary_emb, qkv_bias=bias, o_bias=bias,
            scaling=config.query_pre_attn_scalar**-0.5,
            logit_cap=getattr(config, "attn_logit_softcapping", None) or 0.0,
            sliding_window=layer_sliding_window(config, layer_id, lambda i: i % 2 == 0),
        )
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, _hidden_act(config))
        eps = config.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.post_attention_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.post_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch,
                residual: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states, forward_batch)
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states, residual = self.pre_feedforward_layernorm(hidden_states, residual)
        hidden_states = self.post_feedforward_layernorm(self.mlp(hidden_states))
        return hidden_states, residual


class Gemma2Model(LlamaModel):
    decoder_layer_class = Gemma2DecoderLayer

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.norm = GemmaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # sqrt(hidden) rounded to the model dtype, as transformers does; a buffer (not a per-step
        # host->device copy) so decode can be captured in a CUDA graph.
        scale = torch.tensor(float(config.hidden_size) ** 0.5, dtype=torch.float32)
        self.register_buffer("embed_scale", scale.to(torch.get_default_dtype()), persistent=False)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)
        return embeds * self.embed_scale.to(embeds.dtype)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        hidden_states = self.embed(input_ids) if input_embeds is None else input_embeds
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(positions, hidden_states, forward_batch, residual)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class Gemma2ForCausalLM(LlamaForCausalLM):
    model_class = Gemma2Model

    def final_logit_softcapping(self) -> Optional[float]:
        return getattr(self.config, "final_logit_softcapping", None)
