"""Architecture name (config.json "architectures"[0]) -> model class, imported on first use.

Architectures not listed can run on transformers' modeling code (`transformers_fallback/`)."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import List

_PKG = "sglang.runtime.models"
_MODELS = MappingProxyType({
    "LlamaForCausalLM": f"{_PKG}.llama:LlamaForCausalLM",
    "MistralForCausalLM": f"{_PKG}.mistral:MistralForCausalLM",
    "Qwen2ForCausalLM": f"{_PKG}.qwen2:Qwen2ForCausalLM",
    "Qwen3ForCausalLM": f"{_PKG}.qwen3:Qwen3ForCausalLM",
    "Phi3ForCausalLM": f"{_PKG}.phi3:Phi3ForCausalLM",
    "DeepseekV2ForCausalLM": f"{_PKG}.deepseek_v2:DeepseekV2ForCausalLM",
    "DeepseekV3ForCausalLM": f"{_PKG}.deepseek_v2:DeepseekV3ForCausalLM",
    "MixtralForCausalLM": f"{_PKG}.mixtral:MixtralForCausalLM",
    "Qwen2MoeForCausalLM": f"{_PKG}.qwen2_moe:Qwen2MoeForCausalLM",
    "Qwen3MoeForCausalLM": f"{_PKG}.qwen3_moe:Qwen3MoeForCausalLM",
    "Gemma2ForCausalLM": f"{_PKG}.gemma2:Gemma2ForCausalLM",
    "Gemma3ForCausalLM": f"{_PKG}.gemma3:Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration": f"{_PKG}.gemma3_mm:Gemma3ForConditionalGeneration",
    "Qwen2VLForConditionalGeneration": f"{_PKG}.qwen2_vl:Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration": f"{_PKG}.qwen2_5_vl:Qwen2_5_VLForConditionalGeneration",
    "LlavaForConditionalGeneration": f"{_PKG}.llava:LlavaForConditionalGeneration",
    "LlavaNextForConditionalGeneration": f"{_PKG}.llava_next:LlavaNextForConditionalGeneration",
    # EAGLE draft heads (--speculative-algorithm EAGLE; an EAGLE-1/2 checkpoint says
    # LlamaForCausalLM and the draft runner renames it).
    "LlamaForCausalLMEagle": f"{_PKG}.llama_eagle:LlamaForCausalLMEagle",
    "LlamaForCausalLMEagle3": f"{_PKG}.llama_eagle:LlamaForCausalLMEagle3",
    # Pooling models (embeddings, rewards): backbone-only and sequence-classification checkpoints.
    "LlamaModel": f"{_PKG}.embedding_model:LlamaModel",
    "MistralModel": f"{_PKG}.embedding_model:MistralModel",
    "Qwen2Model": f"{_PKG}.embedding_model:Qwen2Model",
    "LlamaForSequenceClassification": f"{_PKG}.sequence_classification:LlamaForSequenceClassification",
    "Qwen2ForSequenceClassification": f"{_PKG}.sequence_classification:Qwen2ForSequenceClassification",
})


def supported_architectures() -> List[str]:
    return sorted(_MODELS)


def is_supported(architecture: str) -> bool:
    return architecture in _MODELS


def unsupported_message(architecture: str) -> str:
    return (f"model architecture {architecture!r} is not supported; supported architectures: "
            f"{', '.join(supported_architectures())}")


# Serves any architecture transformers implements (--model-impl transformers).
_TRANSFORMERS_FALLBACK = f"{_PKG}.transformers_fallback.model:TransformersForCausalLM"


def get_model_class(architecture: str, model_impl: str = "sglang") -> type:
    """Our class for `architecture`, or with model_impl 'transformers' the fallback's wrapper."""
    if model_impl != "transformers" and architecture not in _MODELS:
        raise ValueError(unsupported_message(architecture))
    target = _TRANSFORMERS_FALLBACK if model_impl == "transformers" else _MODELS[architecture]
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
