"""Tiny random vision-language checkpoints: weights, tokenizer with the family's special tokens,
chat template, and the image processor / processor configs saved beside them, so
`AutoProcessor.from_pretrained(dir)` works. One builder module per family, imported on use.

CLI: python -m sglang.testing.tiny_model --arch qwen2_vl|qwen2_5_vl|llava|llava_next|gemma3|gemma3_text --out DIR
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

_PKG = "sglang.testing.tiny_vlms"
VLM_BUILDERS = MappingProxyType({
    "qwen2_vl": f"{_PKG}.qwen2_vl:make_qwen2_vl",
    "qwen2_5_vl": f"{_PKG}.qwen2_vl:make_qwen2_5_vl",
    "llava": f"{_PKG}.llava:make_llava",
    "llava_next": f"{_PKG}.llava:make_llava_next",
    "gemma3": f"{_PKG}.gemma3:make_gemma3",
    # Gemma 3's text-only model is built beside its VLM (same tokenizer and text config).
    "gemma3_text": f"{_PKG}.gemma3:make_gemma3_text",
})


def make_tiny_vlm(arch: str, out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Write a tiny random VLM checkpoint of family `arch` into `out_dir`; return `out_dir`."""
    if arch not in VLM_BUILDERS:
        raise ValueError(f"unknown vision-language arch {arch!r}; choose one of {sorted(VLM_BUILDERS)}")
    module_name, fn_name = VLM_BUILDERS[arch].split(":")
    return getattr(importlib.import_module(module_name), fn_name)(out_dir, seed=seed, **config_overrides)
