"""Which linear modules of a model adapters can target, and how PEFT's per-projection weights map
onto them.

PEFT names the projections of a Hugging Face model (q_proj, k_proj, v_proj, gate_proj, up_proj,
...); our models fuse q|k|v into `qkv_proj` and gate|up into `gate_up_proj`. A target is one of
our linear modules with the PEFT names of its output slices, in order, and each slice's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

from torch import nn

from sglang.runtime.layers.linear import LinearBase, MergedColumnParallelLinear, QKVParallelLinear

# Our fused module name -> the PEFT projections it holds, in output order.
FUSED_SLICES = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


@dataclass
class LoraTarget:
    name: str  # module path in our model, e.g. model.layers.0.self_attn.qkv_proj
    module: nn.Module
    slices: Tuple[str, ...]  # PEFT projection names of the output slices
    out_sizes: Tuple[int, ...]
    in_features: int

    @property
    def out_features(self) -> int:
        return sum(self.out_sizes)

    def slice_offset(self, i: int) -> int:
        return sum(self.out_sizes[:i])


def _slices_of(leaf: str, module: nn.Module) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    if isinstance(module, QKVParallelLinear):
        return FUSED_SLICES["qkv_proj"], (module.q_size, module.kv_size, module.kv_size)
    if isinstance(module, MergedColumnParallelLinear) and leaf in FUSED_SLICES:
        return FUSED_SLICES[leaf], tuple(module.output_sizes)
    return (leaf,), (module.out_features,)


def find_targets(model: nn.Module, allowed: Iterable[str]) -> Dict[str, LoraTarget]:
    """Our linear modules that hold at least one allowed PEFT projection, by module path."""
    allowed = set(allowed)
    out: Dict[str, LoraTarget] = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if not isinstance(module, LinearBase) or (leaf not in FUSED_SLICES and leaf not in allowed):
            continue
        slices, sizes = _slices_of(leaf, module)
        if not set(slices) & allowed:
            continue
        out[name] = LoraTarget(name, module, slices, sizes, module.in_features)
    return out


def peft_key_index(targets: Dict[str, LoraTarget]) -> Dict[str, Tuple[str, int]]:
    """PEFT module path (HF naming, e.g. model.layers.0.self_attn.q_proj) -> (our target, slice)."""
    index: Dict[str, Tuple[str, int]] = {}
    for name, target in targets.items():
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        for i, proj in enumerate(target.slices):
            index[f"{parent}.{proj}" if parent else proj] = (name, i)
    return index
