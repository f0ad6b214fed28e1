"""`compressed-tensors` checkpoints (llm-compressor's format) holding FP8 weights.

config.json's `quantization_config` names one scheme per group of targets:
    {"quant_method": "compressed-tensors", "format": "float-quantized",
     "config_groups": {"group_0": {"targets": ["Linear"],
         "weights": {"type": "float", "num_bits": 8, "strategy": "channel" | "tensor" | "block",
                     "block_structure": [128, 128], ...},
         "input_activations": {"type": "float", "num_bits": 8, "strategy": "token", "dynamic": true}
                              | {"strategy": "tensor", "dynamic": false} | null}},
     "ignore": ["lm_head", "re:.*mlp.gate$"]}
Tensors: `weight` (float8_e4m3fn), `weight_scale` ([out, 1] per channel, one number per tensor,
[ceil(out/bn), ceil(in/bk)] per block), and `input_scale` for static activations. These map onto
the FP8 method (`fp8.py`); other schemes (integer weights, several groups) are refused by name.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from sglang.runtime.layers.quantization.fp8 import Fp8Config, Fp8Scheme, _names, parse_block

FP8_FORMATS = ("float-quantized", "naive-quantized")


def _fp8_group(qc: Dict[str, Any]) -> Dict[str, Any]:
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or len(groups) != 1:
        raise ValueError("compressed-tensors quantization_config must have exactly one entry in config_groups "
                         f"(one scheme for every Linear layer), got {groups!r}")
    group = next(iter(groups.values()))
    if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
        raise ValueError(f"compressed-tensors config group needs a 'weights' object, got {group!r}")
    return group


def _weights(spec: Dict[str, Any]) -> tuple:
    if spec.get("type") != "float" or spec.get("num_bits") != 8:
        raise ValueError(f"compressed-tensors weights of type {spec.get('type')!r} with {spec.get('num_bits')!r} bits "
                         "are not supported; only FP8 (type 'float', num_bits 8) is")
    strategy = spec.get("strategy")
    if strategy == "block":
        return "block", parse_block(spec.get("block_structure"))
    if strategy not in ("tensor", "channel"):
        raise ValueError(f"compressed-tensors weight strategy {strategy!r} is not supported; use tensor, channel or block")
    return strategy, None


def _activations(spec: Optional[Dict[str, Any]]) -> str:
    if spec is None:
        return "none"
    if spec.get("type") != "float" or spec.get("num_bits") != 8:
        raise ValueError(f"compressed-tensors input_activations must be FP8 (type 'float', num_bits 8), got {spec!r}")
    if spec.get("dynamic") and spec.get("strategy") in ("token", "group"):
        return "dynamic"
    if not spec.get("dynamic") and spec.get("strategy") == "tensor":
        return "static"
    raise ValueError(f"compressed-tensors input_activations strategy {spec.get('strategy')!r} with dynamic="
                     f"{spec.get('dynamic')!r} is not supported; use dynamic per-token or static per-tensor")


class CompressedTensorsConfig(Fp8Config):
    name = "compressed-tensors"

    def __init__(self, scheme: Optional[Fp8Scheme] = None):
        if scheme is None:
            raise ValueError("--quantization compressed-tensors needs a checkpoint whose config.json has a "
                             "compressed-tensors quantization_config")
        super().__init__(scheme)

    @classmethod
    def from_checkpoint(cls, qc: Dict[str, Any]) -> "CompressedTensorsConfig":
        fmt = qc.get("format", "float-quantized")
        if fmt not in FP8_FORMATS:
            raise ValueError(f"compressed-tensors format {fmt!r} is not supported; only FP8 checkpoints "
                             f"({', '.join(FP8_FORMATS)}) are")
        group = _fp8_group(qc)
        strategy, block = _weights(group["weights"])
        activations = _activations(group.get("input_activations"))
        return cls(Fp8Scheme(True, strategy, block, activations, "weight_scale", _names(qc.get("ignore") or [])))
