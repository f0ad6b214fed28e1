"""Architecture -> multimodal processor class, imported on first use; loads the HF processor."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any, Optional

_PKG = "sglang.runtime.multimodal.families"
_PROCESSORS = MappingProxyType({
    "Qwen2VLForConditionalGeneration": f"{_PKG}.qwen2_vl:Qwen2VLProcessor",
    "Qwen2_5_VLForConditionalGeneration": f"{_PKG}.qwen2_vl:Qwen2_5_VLProcessor",
    "LlavaForConditionalGeneration": f"{_PKG}.llava:LlavaProcessor",
    "LlavaNextForConditionalGeneration": f"{_PKG}.llava:LlavaNextProcessor",
    "Gemma3ForConditionalGeneration": f"{_PKG}.gemma3:Gemma3Processor",
})


def is_multimodal(architecture: str) -> bool:
    return architecture in _PROCESSORS


def processor_class(architecture: str) -> type:
    module_name, class_name = _PROCESSORS[architecture].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_multimodal_processor(model_path: str, architecture: str, trust_remote_code: bool = False) -> Optional[Any]:
    """The family's processor around the checkpoint's HF processor, or None for text-only models."""
    if not is_multimodal(architecture):
        return None
    from transformers import AutoConfig, AutoProcessor

    family = processor_class(architecture)
    # A family may assemble its HF parts itself (Qwen2-VL: transformers' processor needs torchvision).
    load = getattr(family, "load_hf_processor", None)
    try:
        hf_config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        hf_processor = (load(model_path, trust_remote_code) if load is not None
                        else AutoProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code))
    except Exception as exc:
        raise ValueError(f"{model_path} is a vision-language model ({architecture}) but its processor "
                         f"could not be loaded ({exc}); the checkpoint needs preprocessor_config.json "
                         f"(and processor_config.json) beside config.json") from exc
    return family(hf_processor, hf_config)
