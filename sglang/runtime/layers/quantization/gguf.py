"""`--quantization gguf`: GGUF weights stay in their blocks (Q4_0, Q4_1, Q8_0) and the CPU computes
on them (`sglang.kernels.cpu.gguf`), instead of being dequantized into the model dtype at load.

A decode step then reads about a sixth of the float32 bytes (Q4_1: 20 bytes per 32 weights).
The weights are the file's own numbers; the arithmetic is llama.cpp's (see `gguf_gemm.cpp`): each
32-value block of the activations is rounded to int8 with its own scale and multiplied with the
blocks' integers exactly, so the outputs differ from the default path (float activations times
the dequantized weights) by that rounding, as llama.cpp's do.

Which layers: a linear layer (or the embedding / LM head) whose checkpoint tensors all have one
type the kernel computes on. Others are dequantized at load, as without the flag, and the log
says which and why. A fused layer (q|k|v, gate|up) needs all its parts in the same type.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import nn

from sglang.kernels.ref.gguf_quant import GGUF_BLOCK, GGUF_KERNEL_TYPES, block_bytes, gguf_embedding
from sglang.runtime.layers.linear import ColumnParallelLinear, LinearBase, copy_checked
from sglang.runtime.layers.quantization.base import EmbeddingMethod, LinearMethod, QuantizationConfig
from sglang.runtime.layers.vocab_parallel_embedding import VocabParallelEmbedding

logger = logging.getLogger(__name__)


def _check_blocks(loaded: torch.Tensor, what: str) -> None:
    if loaded.dtype != torch.uint8:
        raise ValueError(f"{what} keeps GGUF blocks and expects uint8 rows of blocks, got {loaded.dtype}")


def _block_param(rows: int, in_features: int, qtype: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(rows, in_features // GGUF_BLOCK * block_bytes(qtype), dtype=torch.uint8),
                        requires_grad=False)


def _gemm(x: torch.Tensor, weight: torch.Tensor, qtype: int, bias: Optional[torch.Tensor]) -> torch.Tensor:
    from sglang.kernels.cpu.gguf import gguf_gemm

    y = gguf_gemm(x.reshape(-1, x.shape[-1]), weight, qtype, bias)
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


class GGUFLinearMethod(LinearMethod):
    def __init__(self, qtype: int):
        self.qtype = qtype

    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        layer.weight = _block_param(layer.out_features, layer.in_features, self.qtype)

        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            _check_blocks(loaded, type(layer).__name__)
            if isinstance(layer, ColumnParallelLinear):  # its loader places row ranges (shards)
                layer.weight_loader(param, loaded, shard_id)
            else:
                copy_checked(param.data, loaded, "GGUF blocks")

        layer.weight.weight_loader = load

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return _gemm(x, layer.weight, self.qtype, bias)


class GGUFEmbeddingMethod(EmbeddingMethod):
    def __init__(self, qtype: int):
        self.qtype = qtype

    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        layer.weight = _block_param(layer.rows_per_rank, layer.embedding_dim, self.qtype)
        layer.params_dtype = params_dtype

        def load(param: nn.Parameter, loaded: torch.Tensor, shard_id=None) -> None:
            _check_blocks(loaded, type(layer).__name__)
            if loaded.shape[0] != layer.num_embeddings or loaded.shape[1:] != param.shape[1:]:
                raise ValueError(f"shape mismatch for GGUF embedding blocks: checkpoint has {tuple(loaded.shape)}, "
                                 f"model expects ({layer.num_embeddings}, {param.shape[1]})")
            rows = layer.vocab_end - layer.vocab_start
            with torch.no_grad():
                param.data[:rows].copy_(loaded[layer.vocab_start : layer.vocab_end])
                param.data[rows:].zero_()  # zero scales: padding rows are all-zero weights

        layer.weight.weight_loader = load

    def embedding(self, layer: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        return gguf_embedding(ids, layer.weight, self.qtype).to(layer.params_dtype)

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return _gemm(x, layer.weight, self.qtype, bias)


class GGUFConfig(QuantizationConfig):
    name = "gguf"

    def __init__(self) -> None:
        self.kept: FrozenSet[str] = frozenset()

    def checkpoint_tensors_kept(self) -> FrozenSet[str]:
        return self.kept

    def prepare(self, model: nn.Module, model_config, device: str) -> None:
        ckpt = getattr(model_config, "gguf", None)
        if ckpt is None:
            raise ValueError("--quantization gguf needs a GGUF checkpoint (--model-path model.gguf)")
        if device != "cpu":
            raise ValueError(f"--quantization gguf computes on the CPU; with --device {device} drop the flag "
                             "(the weights are then dequantized at load)")
        from sglang.kernels.cpu.gguf import gguf_extension

        if gguf_extension() is None:
            logger.warning("--quantization gguf: the C++ kernels are unavailable (see above); every weight is "
                           "dequantized at load instead")
            return
        kept, skipped = [], []
        for module, tensors in _layer_tensors(model, model_config).items():
            reason = _blocker(module, tensors)
            if reason:
                skipped.append(f"{module_name(model, module)} ({reason})")
                continue
            qtype = tensors[0][1].value
            method = GGUFEmbeddingMethod(qtype) if isinstance(module, VocabParallelEmbedding) else GGUFLinearMethod(qtype)
            module.set_quant_method(method)
            kept.extend(tensors)
        self.kept = frozenset(name for name, _ in kept)
        counts = Counter(qtype.name for _, qtype in kept)
        logger.info("GGUF weights computed on in their blocks: %d tensors (%s); dequantized at load: %d layers%s",
                    len(kept), ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), len(skipped),
                    f" ({'; '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''})" if skipped else "")


def module_name(model: nn.Module, module: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if m is module), type(module).__name__)


def _layer_tensors(model: nn.Module, model_config) -> Dict[nn.Module, List[Tuple[str, object]]]:
    """Layer -> [(GGUF tensor name, tensor type)] of the 2-D weights that load into it."""
    from sglang.runtime.models.gguf.archs import select_arch
    from sglang.runtime.models.gguf.weights import name_map
    from sglang.runtime.models.weight_utils import route_name

    ckpt = model_config.gguf
    params = dict(model.named_parameters())
    owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    stacked = getattr(model, "stacked_params", ())
    out: Dict[nn.Module, List[Tuple[str, object]]] = {}
    for gguf_name, ours in name_map(ckpt, select_arch(ckpt)).items():
        record = ckpt.tensor(gguf_name)
        target = route_name(ours, params, stacked) if ours.endswith(".weight") else None
        if target is None or len(ckpt.logical_shape(gguf_name)) != 2:
            continue
        module = owners.get(id(params[target[0]]))
        if isinstance(module, (LinearBase, VocabParallelEmbedding)):
            out.setdefault(module, []).append((gguf_name, record.tensor_type))
    return out


def _blocker(module: nn.Module, tensors: List[Tuple[str, object]]) -> Optional[str]:
    """Why `module` cannot compute on its GGUF blocks (None when it can)."""
    types = {qtype for _, qtype in tensors}
    if len(types) != 1:
        return "parts of mixed types " + "/".join(sorted(t.name for t in types))
    qtype = next(iter(types))
    if qtype.value not in GGUF_KERNEL_TYPES:
        return f"{qtype.name} has no block kernel"
    in_features = module.embedding_dim if isinstance(module, VocabParallelEmbedding) else module.in_features
    if in_features % GGUF_BLOCK:
        return f"{in_features} inputs are not whole blocks"
    if module.tp_size != 1:
        return "tensor parallel"
    return None
