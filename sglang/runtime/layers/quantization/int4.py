"""INT4 weight-only linear layers from AWQ and GPTQ checkpoints (`--quantization awq|gptq`, read
from config.json's `quantization_config`).

Each checkpoint tensor is repacked as it loads into our layout (`int4_math.py`): rows are output
features, so the layer's own weight loader places them in fused and column-parallel layers. The
matmul is the dequantize-then-multiply twin (`int4_linear_twin`); on CUDA the Triton kernels of
`sglang.kernels.int4_gemm` (a GEMV for decode when groups are in input order, else a one-pass
dequantization feeding cuBLAS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn

from sglang.kernels import use_triton
from sglang.runtime.layers.quantization.base import LinearMethod, QuantizationConfig
from sglang.runtime.layers.quantization.int4_math import (
    gemv_layout,
    int4_linear_twin,
    pack_nibbles,
    unpack_int32_cols,
    unpack_int32_rows,
)
from sglang.runtime.layers.quantization.loading import (
    check_dtype,
    input_shard,
    load_rows,
    new_param,
    quantizable_linears,
    shard_rows,
)


@dataclass(frozen=True)
class Int4Format:
    kind: str  # "awq" or "gptq"
    group_size: int  # -1: one group per output channel (GPTQ)
    zero_offset: int = 0  # added to stored zeros (1 for GPTQ's v1 files)

    def groups(self, k: int) -> int:
        return 1 if self.group_size == -1 else -(-k // self.group_size)


def _int_field(qc: Dict[str, Any], key: str, default: Any, allowed) -> Any:
    value = qc.get(key, default)
    if value not in allowed:
        raise ValueError(f"{qc.get('quant_method')} quantization_config {key} must be one of {list(allowed)}, got {value!r}")
    return value


class Int4LinearMethod(LinearMethod):
    def __init__(self, fmt: Int4Format):
        self.fmt = fmt

    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        # A row-parallel rank holds its slice of the inputs but every group's scales and zeros, so
        # any group size and act-order map splits (g_idx says which groups its inputs use).
        start, k, full = input_shard(layer)
        if full != k and k % 2:
            raise ValueError(f"{k} INT4 inputs per rank do not fill whole bytes; choose another --tp-size")
        n, g = layer.out_features, self.fmt.groups(full)
        layer.register_parameter("weight", None)
        layer.qweight = new_param((n, -(-k // 2)), torch.uint8, self._loader(layer, "qweight"))
        layer.qzeros = new_param((n, g), torch.uint8, self._loader(layer, "qzeros"))
        layer.scales = new_param((n, g), torch.float32, self._loader(layer, "scales"))
        if self.fmt.kind == "gptq":  # the checkpoint's map (act-order permutes it)
            layer.g_idx = new_param((k,), torch.int32, self._g_idx_loader(layer))
        else:
            size = full if self.fmt.group_size == -1 else self.fmt.group_size
            groups = torch.arange(start, start + k, dtype=torch.int32) // size
            layer.register_buffer("g_idx", groups, persistent=False)

    # ---------------------------------------------------------------- loading
    def _expected(self, layer: nn.Module, name: str, rows: int) -> tuple:
        k = input_shard(layer)[2]
        g = self.fmt.groups(k)
        if name == "scales":
            return (g, rows)
        if name == "qzeros":
            return (g, rows // 8)
        return (k, rows // 8) if self.fmt.kind == "awq" else (-(-k // 8), rows)

    def _to_rows(self, name: str, loaded: torch.Tensor, k: int) -> torch.Tensor:
        """A checkpoint tensor -> our layout's rows for it ([out rows, ...])."""
        if name == "scales":
            return loaded.float().t()
        awq = self.fmt.kind == "awq"
        if name == "qzeros":
            return (unpack_int32_cols(loaded, awq) + self.fmt.zero_offset).t()
        q = unpack_int32_cols(loaded, True) if awq else unpack_int32_rows(loaded)[:k]
        return pack_nibbles(q.t())

    def _loader(self, layer: nn.Module, name: str):
        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            rows = shard_rows(layer, shard_id)
            if name == "scales":
                check_dtype(loaded, (torch.float16, torch.bfloat16, torch.float32), f"{self.fmt.kind} scales",
                            "scales are floating point")
            else:
                check_dtype(loaded, (torch.int32,), f"{self.fmt.kind} {name}", "INT4 values come packed in int32 words")
            if rows % 8:
                raise ValueError(f"{self.fmt.kind}: {rows} output features do not pack into int32 words of 8")
            expected = self._expected(layer, name, rows)
            start, k, full = input_shard(layer)
            if tuple(loaded.shape) != expected:
                raise ValueError(f"shape mismatch for {self.fmt.kind} {name} of a layer with {full} inputs, "
                                 f"{rows} outputs and group_size {self.fmt.group_size}: checkpoint has "
                                 f"{tuple(loaded.shape)}, expected {expected}")
            ours = self._to_rows(name, loaded, full)
            if name == "qweight" and k != full:  # this rank's inputs (start is even: whole bytes)
                ours = ours[:, start // 2:start // 2 + param.shape[1]]
            load_rows(layer, param, ours.contiguous(), shard_id, name)
        return load

    def _g_idx_loader(self, layer: nn.Module):
        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            start, k, full = input_shard(layer)
            g = self.fmt.groups(full)
            if tuple(loaded.shape) != (full,):
                raise ValueError(f"gptq g_idx must have one entry per input ({full}), got {tuple(loaded.shape)}")
            if loaded.numel() and not (0 <= int(loaded.min()) and int(loaded.max()) < g):
                raise ValueError(f"gptq g_idx values must be group indices in [0, {g}), got [{int(loaded.min())}, "
                                 f"{int(loaded.max())}]")
            loaded = loaded[start:start + k]
            # Fused parts (q|k|v, gate|up) share their input, so GPTQ gives them one act-order map.
            if getattr(param, "filled", False) and not torch.equal(param.data, loaded.to(torch.int32)):
                raise ValueError("the parts of a fused layer have different gptq g_idx (act-order) maps; "
                                 "they must share one")
            param.data.copy_(loaded.to(torch.int32))
            param.filled = True
        return load

    # ---------------------------------------------------------------- compute
    def process_weights_after_loading(self, layer: nn.Module) -> None:
        # Whether groups follow the inputs in order (not act-order): decode then takes the GEMV.
        # A host check, so it runs here once rather than in a captured forward.
        layer.int4_gemv_layout = gemv_layout(layer.g_idx, self.fmt.group_size)

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if use_triton(x):
            from sglang.kernels.int4_gemm import int4_linear

            return int4_linear(x, layer.qweight, layer.scales, layer.qzeros, layer.g_idx, bias,
                               getattr(layer, "int4_gemv_layout", None))
        return int4_linear_twin(x, layer.qweight, layer.scales, layer.qzeros, layer.g_idx, bias)


class Int4Config(QuantizationConfig):
    name = "int4"

    def __init__(self, fmt: Optional[Int4Format] = None, ignore=()):
        if fmt is None:
            raise ValueError(f"--quantization {self.name} needs a checkpoint whose config.json has a {self.name} "
                             "quantization_config")
        self.fmt, self.ignore = fmt, tuple(ignore)

    def prepare(self, model: nn.Module, model_config, device: str) -> None:
        for layer in quantizable_linears(model, self.ignore):
            layer.set_quant_method(Int4LinearMethod(self.fmt))


class AWQConfig(Int4Config):
    name = "awq"

    @classmethod
    def from_checkpoint(cls, qc: Dict[str, Any]) -> "AWQConfig":
        _int_field(qc, "bits", None, (4,))
        _int_field(qc, "zero_point", True, (True,))
        version = str(qc.get("version", "gemm")).lower()
        if version != "gemm":
            raise ValueError(f"awq quantization_config version {version!r} is not supported; only the GEMM layout is")
        group = _int_field(qc, "group_size", None, (32, 64, 128))
        return cls(Int4Format("awq", group), qc.get("modules_to_not_convert") or ())


class GPTQConfig(Int4Config):
    name = "gptq"

    @classmethod
    def from_checkpoint(cls, qc: Dict[str, Any]) -> "GPTQConfig":
        _int_field(qc, "bits", None, (4,))
        group = _int_field(qc, "group_size", None, (-1, 32, 64, 128))
        fmt = qc.get("checkpoint_format", "gptq")
        if fmt not in ("gptq", "gptq_v2"):
            raise ValueError(f"gptq checkpoint_format {fmt!r} is not supported; use 'gptq' or 'gptq_v2'")
        # desc_act (act-order) needs nothing more: the checkpoint's g_idx is always read.
        return cls(Int4Format("gptq", group, 1 if fmt == "gptq" else 0), qc.get("modules_to_not_convert") or ())
