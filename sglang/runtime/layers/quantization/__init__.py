"""Weight quantization methods (`--quantization`): how a linear or embedding layer stores its
weight and computes with it.

Every layer owns a method object: it creates the layer's weight parameter, and the layer's
forward asks it to compute (`apply` for a matmul, `embedding` for a row lookup). Unquantized is
one method among the others (`unquantized.py`, the default). A `--quantization NAME` config
(one module per method) is given the built model before its weights load and swaps the methods
of the layers it can serve.

A checkpoint quantized on the Hub says so in config.json (`quantization_config.quant_method`,
one of these names); `resolve_quantization` reads it, so no flag is needed for it.

This module stays torch-free: `ServerArgs` reads the names for the flag's choices.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from sglang.runtime.layers.quantization.base import QuantizationConfig

# --quantization NAME -> "module:ConfigClass" (imported only when chosen).
_CONFIGS: Dict[str, str] = {
    "gguf": "sglang.runtime.layers.quantization.gguf:GGUFConfig",
    "fp8": "sglang.runtime.layers.quantization.fp8:Fp8Config",
    "compressed-tensors": "sglang.runtime.layers.quantization.compressed_tensors:CompressedTensorsConfig",
    "awq": "sglang.runtime.layers.quantization.int4:AWQConfig",
    "gptq": "sglang.runtime.layers.quantization.int4:GPTQConfig",
}
QUANTIZATION_METHODS = tuple(_CONFIGS)


def get_quantization_config(name: str, checkpoint_config: Optional[Dict[str, Any]] = None
                            ) -> "QuantizationConfig":
    """The `name` config; from the checkpoint's `quantization_config` dict when given."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown --quantization {name!r}; choose from {', '.join(QUANTIZATION_METHODS)}")
    module, cls_name = _CONFIGS[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    return cls() if checkpoint_config is None else cls.from_checkpoint(checkpoint_config)


def resolve_quantization(flag: Optional[str], hf_config: Any) -> Optional["QuantizationConfig"]:
    """The config for a `--quantization` flag (or None) and the checkpoint's config.json: a
    `quantization_config` there decides the method; a flag naming another method is an error."""
    qc = getattr(hf_config, "quantization_config", None)
    if qc is None:
        return get_quantization_config(flag) if flag else None
    if hasattr(qc, "to_dict"):  # transformers may hand over its own config object
        qc = qc.to_dict()
    if not isinstance(qc, dict) or not isinstance(qc.get("quant_method"), str):
        raise ValueError(f"config.json quantization_config must be an object with a 'quant_method' string, got {qc!r}")
    method = qc["quant_method"]
    if method not in _CONFIGS or method == "gguf":
        served = ", ".join(n for n in QUANTIZATION_METHODS if n != "gguf")
        raise ValueError(f"config.json quantization_config has quant_method {method!r}, which is not supported; "
                         f"supported checkpoint formats: {served}")
    if flag is not None and flag != method:
        raise ValueError(f"--quantization {flag} does not fit this checkpoint, which config.json says is quantized "
                         f"with {method!r}; drop the flag (the checkpoint's method is used) or pass {method}")
    return get_quantization_config(method, qc)
