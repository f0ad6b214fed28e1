"""Helpers every quantization method uses to fill its layer's parameters.

A quantized layer holds more tensors than `weight` (scales, zero points), each with one row per
output feature, so fused (q|k|v, gate|up) and column-parallel layers place them exactly as they
place the weight's rows: `load_rows` hands them to the layer's own `weight_loader`.
`layer_checkpoint_names` says which checkpoint modules a (possibly fused) layer stands for, for a
checkpoint's list of layers left unquantized.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Sequence, Tuple

import torch
from torch import nn

from sglang.runtime.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    ShardId,
    copy_checked,
)


def new_param(shape: Sequence[int], dtype: torch.dtype, loader=None) -> nn.Parameter:
    param = nn.Parameter(torch.zeros(tuple(shape), dtype=dtype), requires_grad=False)
    if loader is not None:
        param.weight_loader = loader
    return param


def shard_rows(layer: nn.Module, shard_id: ShardId) -> int:
    """Output rows of the checkpoint tensor that loads into `layer` as `shard_id`."""
    if isinstance(layer, QKVParallelLinear) and shard_id is not None:
        return layer._shard_layout(shard_id)[0]
    if isinstance(layer, MergedColumnParallelLinear) and shard_id is not None:
        return layer.output_sizes[shard_id]
    return getattr(layer, "full_output_size", layer.out_features)


def input_shard(layer: nn.Module) -> Tuple[int, int, int]:
    """(first input, inputs on this rank, inputs in the checkpoint): a row-parallel layer holds a
    slice of the inputs, every other layer all of them."""
    full = getattr(layer, "full_input_size", layer.in_features)
    start = layer.tp_rank * layer.in_features if full != layer.in_features else 0
    return start, layer.in_features, full


def load_rows(layer: nn.Module, param: nn.Parameter, loaded: torch.Tensor, shard_id: ShardId,
              what: str) -> None:
    """Copy a tensor whose dim 0 is the shard's output rows into `param` (placed like the weight)."""
    if isinstance(layer, ColumnParallelLinear):
        layer.weight_loader(param, loaded, shard_id)
    else:
        copy_checked(param.data, loaded, what)


def check_dtype(loaded: torch.Tensor, allowed: Iterable[torch.dtype], what: str, hint: str) -> None:
    allowed = tuple(allowed)
    if loaded.dtype not in allowed:
        names = "/".join(str(d).replace("torch.", "") for d in allowed)
        raise ValueError(f"{what} must be {names} in the checkpoint, got {str(loaded.dtype).replace('torch.', '')}; "
                         f"{hint}")


def layer_checkpoint_names(model: nn.Module, module_name: str) -> List[str]:
    """Checkpoint module names a layer loads from ('...qkv_proj' -> its q/k/v_proj names)."""
    parts = [module_name.replace(fused, single) for fused, single, _ in getattr(model, "stacked_params", ())
             if module_name.endswith(fused)]
    return parts or [module_name]


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a checkpoint module name is listed: exactly, as a suffix after '.', or by a
    compressed-tensors 're:' regular expression."""
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif name == pattern or name.endswith("." + pattern):
            return True
    return False


def quantizable_linears(model: nn.Module, ignore: Sequence[str] = ()) -> List[nn.Module]:
    """Linear layers to quantize: every `LinearBase` except those the checkpoint lists as left in
    float (a fused layer must be listed whole or not at all)."""
    from sglang.runtime.layers.linear import LinearBase

    out = []
    for name, module in model.named_modules():
        if not isinstance(module, LinearBase) or getattr(module, "keep_float", False):
            continue  # keep_float: e.g. MoE routers
        parts = layer_checkpoint_names(model, name)
        listed = [name_matches(p, ignore) for p in parts]
        if all(listed):
            continue
        if any(listed):
            raise ValueError(f"the checkpoint's quantization_config leaves {[p for p, i in zip(parts, listed) if i]} "
                             f"unquantized but not the rest of fused layer {name} ({parts}); they must match")
        out.append(module)
    return out
