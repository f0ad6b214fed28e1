"""`--quantization fp8`: FP8 W8A8 linear layers (float8_e4m3fn weights and activations).

Three sources of FP8 weights:
- a checkpoint in the Hub's `fp8` format (config.json `quantization_config.quant_method: fp8`):
  per-tensor `weight_scale` (AutoFP8 style, optionally with static `input_scale`), or
  block-wise `weight_scale_inv` of shape [ceil(out/bn), ceil(in/bk)] with `weight_block_size`
  [bn, bk] (DeepSeek-V3, Qwen3-FP8; activations then get one scale per token and bk columns);
- a `compressed-tensors` checkpoint (parsed in `compressed_tensors.py` into the same scheme);
- a float checkpoint quantized at load (online): one scale per output channel, dynamic per-token
  activation scales.
The embedding and LM head stay in the model dtype, as the published checkpoints keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from sglang.runtime.layers.quantization.base import LinearMethod, QuantizationConfig
from sglang.runtime.layers.quantization.fp8_math import FP8_DTYPE, fp8_linear, quantize_rows
from sglang.runtime.layers.quantization.loading import (
    check_dtype,
    input_shard,
    load_rows,
    new_param,
    quantizable_linears,
    shard_rows,
)

WEIGHT_STRATEGIES = ("tensor", "channel", "block")
ACTIVATION_SCHEMES = ("dynamic", "static", "none")  # none: weight-only FP8 (activations stay float)


@dataclass(frozen=True)
class Fp8Scheme:
    serialized: bool = False  # the checkpoint holds FP8 weights (else quantize float weights at load)
    weights: str = "channel"  # one of WEIGHT_STRATEGIES
    block: Optional[Tuple[int, int]] = None  # (bn, bk) for "block"
    activations: str = "dynamic"  # one of ACTIVATION_SCHEMES
    scale_name: str = "weight_scale"  # the checkpoint's name of the weight scale tensor
    ignore: Tuple[str, ...] = ()  # checkpoint modules left unquantized

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_STRATEGIES:
            raise ValueError(f"FP8 weight strategy {self.weights!r} is not supported; use one of {WEIGHT_STRATEGIES}")
        if self.activations not in ACTIVATION_SCHEMES:
            raise ValueError(f"FP8 activation scheme {self.activations!r} is not supported; use one of "
                             f"{ACTIVATION_SCHEMES}")
        if (self.weights == "block") != (self.block is not None):
            raise ValueError("FP8 block-wise weights need a block size [bn, bk] (and only they take one)")
        if self.block is not None and self.activations == "static":
            raise ValueError("FP8 block-wise weights take dynamic activation scales, not a static input_scale")


def parse_block(value: Any) -> Tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"quantization_config weight_block_size must be two positive integers [bn, bk], got {value!r}")
    return int(value[0]), int(value[1])


class Fp8LinearMethod(LinearMethod):
    def __init__(self, scheme: Fp8Scheme):
        self.scheme = scheme
        self.block_k = scheme.block[1] if scheme.block else None

    # ---------------------------------------------------------------- parameters
    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        s = self.scheme
        if not s.serialized:  # float weights now, FP8 after loading
            layer.weight = new_param((layer.out_features, layer.in_features), params_dtype, layer.weight_loader)
            return
        layer.weight = new_param((layer.out_features, layer.in_features), FP8_DTYPE, self._weight_loader(layer))
        cols = -(-layer.in_features // s.block[1]) if s.block else 1
        setattr(layer, s.scale_name, new_param((layer.out_features, cols), torch.float32, self._scale_loader(layer)))
        if s.activations == "static":
            layer.input_scale = new_param((), torch.float32, self._input_scale_loader(layer))

    def _weight_loader(self, layer: nn.Module):
        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            check_dtype(loaded, (FP8_DTYPE,), "an FP8 layer's weight",
                        "the quantization_config says its weights are float8_e4m3fn")
            layer.weight_loader(param, loaded, shard_id)
        return load

    def _scale_loader(self, layer: nn.Module):
        s = self.scheme

        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            rows = shard_rows(layer, shard_id)
            loaded = loaded.float()
            if s.weights == "block":
                bn, bk = s.block
                start, size, full = input_shard(layer)
                grid = (-(-rows // bn), -(-full // bk))
                if tuple(loaded.shape) != grid:
                    raise ValueError(f"block-wise {s.scale_name} of {rows}x{full} weight with blocks "
                                     f"[{bn}, {bk}] must be {grid}, got {tuple(loaded.shape)}")
                if size != full:  # a row-parallel rank's inputs must be whole column blocks
                    if size % bk:
                        raise ValueError(f"{size} inputs per rank are not whole FP8 blocks of {bk}; choose another "
                                         "--tp-size")
                    loaded = loaded[:, start // bk:(start + size) // bk]
                loaded = loaded.repeat_interleave(bn, dim=0)[:rows]
            elif s.weights == "tensor":
                if loaded.numel() != 1:
                    raise ValueError(f"a per-tensor {s.scale_name} has one element, got shape {tuple(loaded.shape)}")
                loaded = loaded.reshape(1, 1).expand(rows, 1)
            elif loaded.numel() != rows:
                raise ValueError(f"a per-channel {s.scale_name} has one value per output row ({rows}), got shape "
                                 f"{tuple(loaded.shape)}")
            else:
                loaded = loaded.reshape(rows, 1)
            load_rows(layer, param, loaded.contiguous(), shard_id, s.scale_name)
        return load

    @staticmethod
    def _input_scale_loader(layer: nn.Module):
        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            if loaded.numel() != 1:
                raise ValueError(f"input_scale is one number per layer, got shape {tuple(loaded.shape)}")
            # Fused parts share one activation: the largest scale rounds all of them without clipping.
            with torch.no_grad():
                param.copy_(torch.maximum(param, loaded.float().reshape(())))
        return load

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        if self.scheme.serialized:
            if self.scheme.activations == "static" and not float(layer.input_scale) > 0:
                raise ValueError("a static FP8 input_scale must be positive")
            if getattr(layer, "float_after_load", False):
                self._to_float(layer)
            return
        if getattr(layer, "float_after_load", False):  # read directly by its module: stays float
            from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod

            layer.quant_method = UnquantizedLinearMethod()
            return
        weight, scale = quantize_rows(layer.weight.data)  # on the weight's device
        layer.weight = nn.Parameter(weight, requires_grad=False)
        setattr(layer, self.scheme.scale_name, nn.Parameter(scale, requires_grad=False))

    def _to_float(self, layer: nn.Module) -> None:
        """A layer whose weight is read directly (MLA absorbs kv_b_proj into its queries and
        output) gets the dequantized weight in the model dtype and computes unquantized."""
        from sglang.runtime.layers.quantization.fp8_math import dequantize
        from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod

        weight = dequantize(layer.weight.data, getattr(layer, self.scheme.scale_name).data, self.block_k)
        layer.weight = nn.Parameter(weight.to(layer.params_dtype), requires_grad=False)
        delattr(layer, self.scheme.scale_name)
        layer.quant_method = UnquantizedLinearMethod()

    # ---------------------------------------------------------------- compute
    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        scale = getattr(layer, self.scheme.scale_name)
        if self.scheme.activations == "none":
            from sglang.runtime.layers.quantization.fp8_math import dequantize

            return torch.nn.functional.linear(x, dequantize(layer.weight, scale, self.block_k).to(x.dtype), bias)
        static = layer.input_scale if self.scheme.activations == "static" else None
        return fp8_linear(x, layer.weight, scale, self.block_k, static, bias)


class Fp8Config(QuantizationConfig):
    name = "fp8"

    def __init__(self, scheme: Fp8Scheme = Fp8Scheme()):
        self.scheme = scheme

    @classmethod
    def from_checkpoint(cls, qc: Dict[str, Any]) -> "Fp8Config":
        fmt = qc.get("fmt", "e4m3")
        if fmt not in ("e4m3", "float8_e4m3fn"):
            raise ValueError(f"quantization_config fmt {fmt!r} is not supported; FP8 checkpoints must be e4m3")
        block = qc.get("weight_block_size")
        activations = qc.get("activation_scheme", "dynamic")
        if activations not in ("dynamic", "static"):
            raise ValueError(f"quantization_config activation_scheme must be 'dynamic' or 'static', got {activations!r}")
        ignore = _names(qc.get("ignored_layers") or qc.get("modules_to_not_convert") or [])
        if block is None:
            return cls(Fp8Scheme(True, "tensor", None, activations, "weight_scale", ignore))
        return cls(Fp8Scheme(True, "block", parse_block(block), activations, "weight_scale_inv", ignore))

    def prepare(self, model: nn.Module, model_config, device: str) -> None:
        if model_config.gguf is not None and self.scheme.serialized:
            raise ValueError("an FP8 quantization_config cannot describe a GGUF checkpoint")
        for layer in quantizable_linears(model, self.scheme.ignore):
            layer.set_quant_method(Fp8LinearMethod(self.scheme))
        if self.scheme.serialized and self.scheme.block is not None:
            from sglang.runtime.layers.moe.fp8_experts import stage_fp8_block_experts
            from sglang.runtime.layers.moe.fused_moe import FusedMoE

            for module in model.modules():
                if isinstance(module, FusedMoE):
                    stage_fp8_block_experts(module, self.scheme.block)

    def finish(self, model: nn.Module) -> None:
        super().finish(model)
        from sglang.runtime.layers.moe.fp8_experts import dequantize_staged_experts

        for module in model.modules():
            if getattr(module, "fp8_block", None) is not None:
                dequantize_staged_experts(module)


def _names(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"quantization_config's list of unquantized modules must be a list of names, got {value!r}")
    return tuple(value)

