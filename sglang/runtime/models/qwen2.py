"""Qwen2 / Qwen2.5: Llama's architecture with biases on q/k/v (not on o)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from transformers import PretrainedConfig

from sglang.runtime.models.llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaModel, layer_sliding_window


def qwen_sliding_window(config: PretrainedConfig, layer_id: int) -> Optional[int]:
    # Without layer_types (older configs), layers from max_window_layers on slide.
    max_window_layers = getattr(config, "max_window_layers", config.num_hidden_layers)
    return layer_sliding_window(config, layer_id, lambda i: i >= max_window_layers)


class Qwen2DecoderLayer(LlamaDecoderLayer):
    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        return {"qkv_bias": True, "o_bias": False, "sliding_window": qwen_sliding_window(config, layer_id)}


class Qwen2Model(LlamaModel):
    decoder_layer_class = Qwen2DecoderLayer


class Qwen2ForCausalLM(LlamaForCausalLM):
    model_class = Qwen2Model
