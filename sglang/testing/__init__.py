"""Tiny Hugging Face checkpoints and helpers shared by tests, examples, demos and benchmarks.

- `make_tiny_checkpoint(arch, out_dir, seed=0, shards=1, **config_overrides)`: a tiny random
  checkpoint (llama, mistral, qwen2, qwen3, gemma2) that transformers loads.
- `write_shape_config(name, out_dir)`: a real model's config + tokenizer, no weights.
- `tiny_model_dir(arch, ...)` / `shape_model_dir(name)`: the same, cached across processes.
- `tiny_gguf_path(arch, tensor_type="F32", ...)`: the tiny checkpoint converted to a GGUF file
  (`sglang.testing.tiny_gguf`), cached.
- `smollm2_gguf_path(fetch=True)`: a real instruct model (SmolLM2-135M-Instruct, GGUF), fetched
  once into the user cache (`python -m sglang.testing.models smollm2` prints the path).

The names load on first use: importing the package must not import `tiny_model`, or
`python -m sglang.testing.tiny_model` finds its own module already imported and runpy warns.
"""

from __future__ import annotations

import importlib
from typing import Any

# Exported name -> (module, attribute). SUPPORTED_* are tuples of the modules' mapping keys.
_EXPORTS = {
    "make_tiny_checkpoint": ("sglang.testing.tiny_model", "make_tiny_checkpoint"),
    "SUPPORTED_ARCHES": ("sglang.testing.tiny_model", "ARCHES"),
    "write_shape_config": ("sglang.testing.shapes", "write_shape_config"),
    "SUPPORTED_SHAPES": ("sglang.testing.shapes", "SHAPES"),
    "shape_model_dir": ("sglang.testing.fixtures", "shape_model_dir"),
    "tiny_model_dir": ("sglang.testing.fixtures", "tiny_model_dir"),
    "tiny_gguf_path": ("sglang.testing.fixtures", "tiny_gguf_path"),
    "smollm2_gguf_path": ("sglang.testing.models", "smollm2_gguf_path"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    return tuple(value) if name.startswith("SUPPORTED_") else value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
