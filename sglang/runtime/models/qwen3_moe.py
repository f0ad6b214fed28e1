"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q/k head norms) with the
Qwen-MoE experts block and no shared expert."""

from __future__ import annotations

from typing import Any, Dict

from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.moe import expert_weight_mapping
from sglang.runtime.models.llama import STACKED_PARAMS, LlamaForCausalLM, LlamaModel
from sglang.runtime.models.qwen2_moe import num_experts_of, qwen_moe_mlp
from sglang.runtime.models.qwen3 import Qwen3DecoderLayer


class Qwen3MoeDecoderLayer(Qwen3DecoderLayer):
    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        # transformers slides every layer when the config keeps a window (use_sliding_window).
        bias = bool(getattr(config, "attention_bias", False))
        window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", False) else None
        return {"qkv_bias": bias, "o_bias": bias, "sliding_window": int(window) if window else None}

    def build_mlp(self, config: PretrainedConfig, layer_id: int) -> nn.Module:
        return qwen_moe_mlp(config, layer_id, shared_expert=False)


class Qwen3MoeModel(LlamaModel):
    decoder_layer_class = Qwen3MoeDecoderLayer


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    model_class = Qwen3MoeModel

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.stacked_params = (*expert_weight_mapping(num_experts_of(config)), *STACKED_PARAMS)
