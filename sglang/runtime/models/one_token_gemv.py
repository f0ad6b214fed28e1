"""Model transform: one-token forward passes on fused Triton GEMVs (CUDA, Llama-style decoders).

A batch-1 decode step is a chain of matrix-vector products, one weight read each, with small
elementwise kernels between them. `apply_one_token_gemv` switches a model so that steps with a
single token run `LlamaDecoderLayer.forward_one_token`: four GEMV launches per layer, the RMSNorms
folded into the qkv and gate_up GEMVs, the SiLU-mul into down, the residual adds into o and down
(`sglang.kernels.gemv`), and the vocabulary projection on the same GEMV. Steps of two or more tokens
keep cuBLAS and the separate kernels, where the Triton GEMV is slower.

Opt-in (`--enable-fused-gemv`): on an H200 (Llama-3-8B shape, bs1) the step measured the same as
cuBLAS plus separate kernels; the 96 launches it saves are paid back in GEMVs that stream a little
slower than cuBLAS inside the step. It stays for GPUs where cuBLAS streams one row less well (an
H100 measured 2.8 TB/s of 3.35 on these shapes), to be A/B-tested there with one flag.

The transform only sets flags the model's own forward reads; it refuses models it cannot serve
exactly (another decoder layout, Gemma-style norms, another activation, weights that are not
bf16/fp16 on CUDA) and leaves them unchanged.
"""

from __future__ import annotations

import logging
from typing import List

import torch
from torch import nn

from sglang.runtime.layers.activation import SiluAndMul
from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaModel

logger = logging.getLogger(__name__)

GEMV_DTYPES = (torch.bfloat16, torch.float16)


def one_token_gemv_blockers(model: nn.Module) -> List[str]:
    """Why `model` cannot take the fused one-token path (empty when it can)."""
    model = getattr(model, "language_model", model)  # vision-language models decode through it
    inner = getattr(model, "model", None)
    if not isinstance(inner, LlamaModel) or type(inner).forward is not LlamaModel.forward:
        return [f"{type(model).__name__} does not use the Llama decoder forward"]
    for layer in inner.layers:
        if not isinstance(layer, LlamaDecoderLayer) or type(layer).forward is not LlamaDecoderLayer.forward:
            return [f"layer {type(layer).__name__} has its own forward"]
        if not isinstance(layer.self_attn, LlamaAttention):
            return [f"attention {type(layer.self_attn).__name__} is not Llama-style q/k/v"]
        act_fn = getattr(layer.mlp, "act_fn", None)  # mixture-of-experts blocks have none
        if not isinstance(act_fn, SiluAndMul):
            return [f"feed-forward {type(layer.mlp).__name__} is not a SiLU-gated MLP"]
        if any(type(norm) is not RMSNorm for norm in (layer.input_layernorm, layer.post_attention_layernorm)):
            return ["norms are not Llama-style RMSNorm"]
    weight = inner.layers[0].self_attn.qkv_proj.weight if len(inner.layers) else None
    if weight is None or not weight.is_cuda or weight.dtype not in GEMV_DTYPES:
        return ["weights are not bfloat16/float16 on CUDA"]
    return []


def apply_one_token_gemv(model: nn.Module) -> bool:
    """Switch `model` to fused GEMVs for one-token steps if it qualifies; returns whether it did."""
    reasons = one_token_gemv_blockers(model)
    if reasons:
        logger.info("one-token fused GEMV path off: %s", "; ".join(reasons))
        return False
    model = getattr(model, "language_model", model)
    model.model.one_token_gemv = True
    processor = getattr(model, "logits_processor", None)
    if processor is not None:
        processor.one_row_gemv = True
    logger.info("one-token steps run fused Triton GEMVs (--enable-fused-gemv)")
    return True
