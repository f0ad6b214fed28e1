"""Qwen3 (dense): Qwen2's layout plus an RMSNorm over each q and k head before rotary."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from transformers import PretrainedConfig

from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaModel
from sglang.runtime.models.qwen2 import qwen_sliding_window


class Qwen3Attention(LlamaAttention):
    def __init__(self, config: PretrainedConfig, layer_id: int, *args: Any, **kwargs: Any):
        super().__init__(config, layer_id, *args, **kwargs)
        self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def _per_head(self, x: torch.Tensor, norm: RMSNorm) -> torch.Tensor:
        return norm(x.reshape(-1, self.head_dim)).view(x.shape)

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._per_head(q, self.q_norm), self._per_head(k, self.k_norm)


class Qwen3DecoderLayer(LlamaDecoderLayer):
    attention_class = Qwen3Attention

    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        bias = bool(getattr(config, "attention_bias", False))
        return {"qkv_bias": bias, "o_bias": bias, "sliding_window": qwen_sliding_window(config, layer_id)}


class Qwen3Model(LlamaModel):
    decoder_layer_class = Qwen3DecoderLayer


class Qwen3ForCausalLM(LlamaForCausalLM):
    model_class = Qwen3Model
