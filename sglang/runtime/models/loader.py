"""Build a model for a ModelConfig and fill its weights (from safetensors/.bin files, a GGUF file,
or random for 'dummy').

Under tensor parallelism the model is constructed inside `tensor_parallel(tp)`, so its parallel
layers hold this rank's shard, and safetensors are read lazily: each rank reads only its slices."""

from __future__ import annotations

import contextlib
import logging
from typing import FrozenSet, Iterator, Optional, Tuple

import torch
from torch import nn

from sglang.runtime.distributed.tensor_parallel import (
    SINGLE_RANK,
    TensorParallel,
    check_tensor_parallel_config,
    tensor_parallel,
)
from sglang.runtime.layers.quantization import resolve_quantization
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.registry import get_model_class
from sglang.runtime.models.weight_utils import find_weight_files, init_dummy_weights, iterate_weights

logger = logging.getLogger(__name__)

LOAD_FORMATS = ("auto", "safetensors", "pt", "gguf", "dummy")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly in the target dtype (no float32 copy of a large model)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _fit_rope_to_context(model: nn.Module, context_len: int) -> None:
    """A --context-length beyond the checkpoint's limit needs cos/sin rows for those positions."""
    for module in model.modules():
        if isinstance(module, RotaryEmbedding):
            module.ensure_capacity(context_len)


def _gguf_weights(model_config: ModelConfig, keep_quantized: FrozenSet[str]) -> Iterator[Tuple[str, torch.Tensor]]:
    from sglang.runtime.models.gguf.archs import select_arch
    from sglang.runtime.models.gguf.weights import iterate_gguf_weights

    ckpt = model_config.gguf
    logger.info("loading GGUF %s (tensor types: %s)", ckpt.path, ckpt.tensor_type_counts())
    return iterate_gguf_weights(ckpt, select_arch(ckpt), model_config.hf_config, model_config.dtype,
                                keep_quantized=keep_quantized)


def check_tensor_parallel_support(model_config: ModelConfig, tp: TensorParallel,
                                  quantization: Optional[str]) -> None:
    """Refuse at start what cannot run split over `tp.size` ranks."""
    if tp.size == 1:
        return
    check_tensor_parallel_config(model_config.num_attention_heads, model_config.num_key_value_heads,
                                 tp.size, repr(model_config.model_path))
    # FP8 and INT4 layers shard like float ones (their loaders place scales with the weight rows);
    # GGUF blocks do not.
    if quantization == "gguf" or model_config.gguf is not None:
        what = f"--quantization {quantization}" if quantization else "a GGUF checkpoint"
        raise ValueError(f"{what} is not supported with --tp-size {tp.size}; use a safetensors "
                         f"checkpoint, or --tp-size 1")


def load_model(model_config: ModelConfig, load_format: str = "auto", device: str = "cpu",
               seed: int = 0, quantization: Optional[str] = None,
               tp: TensorParallel = SINGLE_RANK) -> nn.Module:
    """The model of `model_config.architecture` in eval mode, on `device`, in model_config.dtype;
    with `quantization` (a `--quantization` name), its layers computing as that method says; its
    parallel layers holding `tp.rank`'s shard."""
    if load_format not in LOAD_FORMATS:
        raise ValueError(f"load_format must be one of {LOAD_FORMATS}, got {load_format!r}")
    quant = resolve_quantization(quantization, model_config.hf_config)  # flag or config.json
    check_tensor_parallel_support(model_config, tp, quant.name if quant is not None else None)
    if model_config.model_impl == "transformers":
        from sglang.runtime.models.transformers_fallback.select import check_fallback_load

        check_fallback_load(quant, tp.size, gguf=model_config.gguf is not None)
    model_cls = get_model_class(model_config.architecture, model_config.model_impl)
    with _default_dtype(model_config.dtype), torch.device(device), tensor_parallel(tp):
        model = model_cls(model_config.hf_config)
        if quant is not None:
            quant.prepare(model, model_config, device)
    kept = quant.checkpoint_tensors_kept() if quant is not None else frozenset()
    if load_format == "dummy":
        init_dummy_weights(model, seed)
    elif model_config.gguf is not None and load_format in ("auto", "gguf"):
        model.load_weights(_gguf_weights(model_config, kept))
    elif model_config.gguf is not None or load_format == "gguf":
        kind = "a GGUF file" if model_config.gguf is not None else "not a GGUF checkpoint"
        raise ValueError(f"load_format {load_format!r} does not fit {model_config.model_path!r}, which is {kind}")
    else:
        files, kind = find_weight_files(model_config.model_path, load_format)
        logger.info("loading %d %s file(s) from %s", len(files), kind, model_config.model_path)
        model.load_weights(iterate_weights(files, kind, lazy=True))
    if quant is not None:
        quant.finish(model)  # repack / quantize what loaded
    _fit_rope_to_context(model, model_config.context_len)
    return model.eval()
