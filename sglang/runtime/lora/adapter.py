"""Reading a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) into host tensors
laid out for our fused modules, with every mismatch refused at load with a message.

PEFT computes y = W x + scaling * B (A x) with scaling = lora_alpha / r (lora_alpha / sqrt(r) with
use_rslora). The scaling is folded into B here, so the device kernels only gather and multiply.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from sglang.runtime.lora.targets import LoraTarget, peft_key_index

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
SlicePair = Optional[Tuple[torch.Tensor, torch.Tensor]]  # (A [r, in], scaling * B [out_slice, r])


class LoraAdapterError(ValueError):
    """An adapter that cannot be served (missing files, unsupported options, wrong shapes)."""


@dataclass
class LoraAdapter:
    name: str
    path: str
    rank: int
    scaling: float
    # Our target module -> one (A, scaled B) per output slice, None for slices it does not adapt.
    weights: Dict[str, List[SlicePair]] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pairs in self.weights.values()
                   for pair in pairs if pair is not None for t in pair)


def read_adapter_config(path: str) -> dict:
    if not os.path.isdir(path):
        raise LoraAdapterError(f"LoRA adapter path {path!r} is not a directory (a PEFT adapter directory "
                               f"with {CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(cfg_path):
        raise LoraAdapterError(f"LoRA adapter {path!r} has no {CONFIG_FILE}")
    with open(cfg_path) as f:
        return json.load(f)


def adapter_scaling(cfg: dict) -> Tuple[int, float]:
    """(rank, scaling) of a PEFT LoRA config; refuses options we do not serve."""
    if cfg.get("peft_type", "LORA") != "LORA":
        raise LoraAdapterError(f"peft_type {cfg.get('peft_type')!r} is not a LoRA adapter")
    for key in ("use_dora", "fan_in_fan_out", "lora_bias"):
        if cfg.get(key):
            raise LoraAdapterError(f"adapters with {key}=true are not supported")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save"):
        if cfg.get(key):
            raise LoraAdapterError(f"adapters with {key} are not supported (got {cfg[key]!r})")
    if cfg.get("bias", "none") != "none":
        raise LoraAdapterError(f"adapters with bias={cfg['bias']!r} are not supported (only 'none')")
    rank = int(cfg.get("r", 8))
    alpha = float(cfg.get("lora_alpha", rank))
    if rank < 1:
        raise LoraAdapterError(f"adapter rank r={rank} must be >= 1")
    scaling = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
    return rank, scaling


def load_adapter(name: str, path: str, targets: Dict[str, LoraTarget], max_rank: int,
                 dtype: torch.dtype) -> LoraAdapter:
    """Read and check an adapter against the base model's targets; weights stay on the host."""
    from safetensors.torch import load_file

    rank, scaling = adapter_scaling(read_adapter_config(path))
    if rank > max_rank:
        raise LoraAdapterError(f"adapter {name!r} has rank {rank} but --max-lora-rank is {max_rank}; "
                               f"restart with --max-lora-rank {rank} or more")
    weights_path = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights_path):
        raise LoraAdapterError(f"LoRA adapter {path!r} has no {WEIGHTS_FILE} (only safetensors adapters "
                               f"are read)")
    tensors = load_file(weights_path)
    adapter = LoraAdapter(name, path, rank, scaling)
    index = peft_key_index(targets)
    pairs = _pair_tensors(tensors, name)
    for module_path, (a, b) in pairs.items():
        hit = index.get(module_path)
        if hit is None:
            served = sorted({t.slices[i] for t in targets.values() for i in range(len(t.slices))})
            raise LoraAdapterError(f"adapter {name!r} targets {module_path!r}, which the server does not "
                                   f"serve; servable projections: {served} (see --lora-target-modules)")
        target_name, i = hit
        target = targets[target_name]
        _check_shapes(name, module_path, a, b, rank, target.in_features, target.out_sizes[i])
        slots = adapter.weights.setdefault(target_name, [None] * len(target.slices))
        slots[i] = (a.to(dtype).contiguous(), (b.float() * scaling).to(dtype).contiguous())
    if not adapter.weights:
        raise LoraAdapterError(f"adapter {name!r} at {path!r} has no LoRA weights")
    return adapter


def _pair_tensors(tensors: Dict[str, torch.Tensor], name: str) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """{PEFT module path: (lora_A, lora_B)} from the file's keys."""
    found: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        stem = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in stem:
                found.setdefault(stem.split(marker)[0], {})[part] = tensor
                break
        else:
            raise LoraAdapterError(f"adapter {name!r} has tensor {key!r}, which is not a lora_A/lora_B weight "
                                   f"(embedding or bias weights are not supported)")
    out = {}
    for module_path, parts in found.items():
        if set(parts) != {"lora_A", "lora_B"}:
            raise LoraAdapterError(f"adapter {name!r}: {module_path} has {sorted(parts)} but needs lora_A and lora_B")
        out[module_path] = (parts["lora_A"], parts["lora_B"])
    return out


def _check_shapes(name: str, module_path: str, a: torch.Tensor, b: torch.Tensor, rank: int,
                  in_features: int, out_features: int) -> None:
    want_a, want_b = (rank, in_features), (out_features, rank)
    if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
        raise LoraAdapterError(
            f"adapter {name!r} does not fit the base model at {module_path}: lora_A {tuple(a.shape)} and lora_B "
            f"{tuple(b.shape)}, expected {want_a} and {want_b}; was it trained for this base model?")
