"""Weight quantization methods (`--quantization`): how a linear or embedding layer stores its
weight and computes with it.

Every layer owns a method object: it creates the layer's weight parameter, and the layer's
forward asks it to compute (`apply` for a matmul, `embedding` for a row lookup). Unquantized is
one method among the others (`unquantized.py`, the default). A `--quantization NAME` config
(one module per method) is given the built model before its weights load and swaps the methods
of the layers it can serve.

This module stays torch-free: `ServerArgs` reads the names for the flag's choices.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict

if TYPE_CHECKING:
    from sglang.runtime.layers.quantization.base import QuantizationConfig

# --quantization NAME -> "module:ConfigClass" (imported only when chosen).
_CONFIGS: Dict[str, str] = {
    "gguf": "sglang.runtime.layers.quantization.gguf:GGUFConfig",
}
QUANTIZATION_METHODS = tuple(_CONFIGS)


def get_quantization_config(name: str) -> "QuantizationConfig":
    if name not in _CONFIGS:
        raise ValueError(f"unknown --quantization {name!r}; choose from {', '.join(QUANTIZATION_METHODS)}")
    module, cls = _CONFIGS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
