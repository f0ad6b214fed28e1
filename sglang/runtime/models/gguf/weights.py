"""GGUF tensors -> (our parameter name, tensor) pairs, one tensor at a time.

Every name and tensor type is checked before any tensor is read, so an unsupported file fails at
once. Each tensor is then dequantized with the `gguf` package (float32), has llama.cpp's
conversion transforms undone (see `archs`), and is cast to the model dtype before the next one is
read: host memory holds one float32 tensor beyond the model."""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterator, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PretrainedConfig

from sglang.runtime.models.gguf.archs import GLOBAL_NAMES, GGUFArch
from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint
from sglang.runtime.models.gguf.rope_freqs import ROPE_FREQS

# Tensors the config consumed (not model parameters).
_CONFIG_TENSORS = (ROPE_FREQS,)


# ---------------------------------------------------------------- tensor types


def can_dequantize(qtype) -> bool:
    """Whether the installed `gguf` package dequantizes `qtype` (probed on one zero block)."""
    from gguf import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    if qtype not in GGML_QUANT_SIZES:
        return False
    _, type_size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
    except (NotImplementedError, ValueError, TypeError, AssertionError):
        return False
    return True


def dequantizable_types() -> List[str]:
    from gguf import GGMLQuantizationType

    return [t.name for t in GGMLQuantizationType if can_dequantize(t)]


def check_tensor_types(ckpt: GGUFCheckpoint) -> None:
    """Raise naming every tensor type in `ckpt` that cannot be dequantized (and the supported ones)."""
    by_type: Dict[object, List[str]] = {}
    for record in ckpt.tensors:
        by_type.setdefault(record.tensor_type, []).append(record.name)
    bad = {qtype: names for qtype, names in by_type.items() if not can_dequantize(qtype)}
    if bad:
        shown = "; ".join(f"{qtype.name} ({len(names)} tensors, e.g. {names[0]})" for qtype, names in bad.items())
        raise ValueError(f"GGUF file {ckpt.path!r} holds tensor types the gguf package cannot dequantize: "
                         f"{shown}. Supported: {', '.join(dequantizable_types())}")


# ---------------------------------------------------------------- names


def hf_name(gguf_name: str, arch: GGUFArch) -> Optional[str]:
    """Our parameter name for a GGUF tensor name, or None if the architecture has no such tensor."""
    base, _, kind = gguf_name.rpartition(".")
    if kind not in ("weight", "bias"):
        return None
    if base.startswith("blk."):
        parts = base.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in arch.block_names:
            return None
        return f"model.layers.{parts[1]}.{arch.block_names[parts[2]]}.{kind}"
    return f"{GLOBAL_NAMES[base]}.{kind}" if base in GLOBAL_NAMES else None


def name_map(ckpt: GGUFCheckpoint, arch: GGUFArch) -> Dict[str, str]:
    """GGUF name -> our name for every tensor; raises listing tensors the model has no place for."""
    mapping, unknown = {}, []
    for record in ckpt.tensors:
        if record.name in _CONFIG_TENSORS:
            continue
        ours = hf_name(record.name, arch)
        if ours is None:
            unknown.append(record.name)
        else:
            mapping[record.name] = ours
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        raise ValueError(f"GGUF file {ckpt.path!r} ({ckpt.architecture}) has tensors {arch.architecture} has no "
                         f"parameter for: {shown}")
    return mapping


# ---------------------------------------------------------------- values


def unpermute_rotary_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Undo llama.cpp's per-head reorder of q/k rows: it stores each head's rotate-half rows
    (first half, second half) as interleaved pairs; this restores halves."""
    half = weight.shape[0] // num_heads // 2
    return weight.reshape(num_heads, half, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _dequantized(ckpt: GGUFCheckpoint, name: str) -> torch.Tensor:
    from gguf.quants import dequantize

    record = ckpt.tensor(name)
    values = dequantize(record.data, record.tensor_type)
    shape = tuple(ckpt.logical_shape(name))
    if tuple(values.shape) != shape:
        values = values.reshape(shape)
    if not values.flags.writeable:  # float32 tensors come back as views of the read-only map
        values = np.array(values)
    return torch.from_numpy(values).float()


def _undo_conversion(tensor: torch.Tensor, gguf_name: str, arch: GGUFArch, config: PretrainedConfig) -> torch.Tensor:
    leaf = gguf_name.split(".")[-2]
    if arch.permute_qk and leaf in ("attn_q", "attn_k"):
        heads = config.num_attention_heads if leaf == "attn_q" else config.num_key_value_heads
        tensor = unpermute_rotary_rows(tensor, heads)
    if arch.norm_offset and gguf_name.endswith("norm.weight"):
        tensor = tensor - arch.norm_offset
    return tensor


def _blocks(ckpt: GGUFCheckpoint, name: str) -> torch.Tensor:
    """The tensor's rows of quantized blocks as stored: uint8 [rows, bytes per row]."""
    return torch.from_numpy(np.array(ckpt.tensor(name).data, dtype=np.uint8))


def iterate_gguf_weights(ckpt: GGUFCheckpoint, arch: GGUFArch, config: PretrainedConfig,
                         dtype: torch.dtype, progress: bool = True,
                         keep_quantized: FrozenSet[str] = frozenset()) -> Iterator[Tuple[str, torch.Tensor]]:
    """(our name, tensor in `dtype`) for every model tensor of `ckpt`, streamed with a progress bar.

    Tensors named in `keep_quantized` come as their uint8 rows of blocks instead (for
    `--quantization gguf`); llama.cpp's row reorder is undone on those rows all the same."""
    check_tensor_types(ckpt)
    mapping = name_map(ckpt, arch)
    with tqdm(total=len(mapping), desc="Loading GGUF weights", unit="tensor", disable=not progress) as bar:
        for gguf_name, ours in mapping.items():
            if gguf_name in keep_quantized:
                yield ours, _undo_conversion(_blocks(ckpt, gguf_name), gguf_name, arch, config)
            else:
                tensor = _undo_conversion(_dequantized(ckpt, gguf_name), gguf_name, arch, config)
                yield ours, tensor.to(dtype)
            bar.update(1)
