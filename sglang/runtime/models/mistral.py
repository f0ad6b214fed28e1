"""Mistral: Llama's architecture with optional sliding-window attention on every layer."""

from __future__ import annotations

from typing import Any, Dict

from transformers import PretrainedConfig

from sglang.runtime.models.llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaModel


class MistralDecoderLayer(LlamaDecoderLayer):
    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        # transformers applies config.sliding_window to all Mistral layers (it ignores layer_types).
        window = getattr(config, "sliding_window", None)
        return {"qkv_bias": False, "o_bias": False, "sliding_window": int(window) if window else None}


class MistralModel(LlamaModel):
    decoder_layer_class = MistralDecoderLayer


class MistralForCausalLM(LlamaForCausalLM):
    model_class = MistralModel
