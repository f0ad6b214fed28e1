"""The attention function transformers' modeling code calls under the fallback.

Registered once in transformers' `AttentionInterface` as ATTN_IMPLEMENTATION. Transformers passes
the keyword arguments of a model's forward down to it, so the wrapper (`model.py`) hands each
forward a `BridgeCall` (the ForwardBatch and one RadixAttention per layer) under BATCH_KWARG; the
function writes the step's k/v into our KV pool at the batch's slots and attends over each
request's cached prefix plus its new tokens through our attention backend. transformers builds no
mask for an implementation it does not know, and the backend applies causality per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch

from sglang.runtime.layers.attention.radix_attention import RadixAttention
from sglang.runtime.model_executor.forward_batch import ForwardBatch

ATTN_IMPLEMENTATION = "sglang_paged"
BATCH_KWARG = "sglang_call"


@dataclass(frozen=True)
class BridgeCall:
    forward_batch: ForwardBatch
    layers: Sequence[RadixAttention]


def _tokens_major(x: torch.Tensor) -> torch.Tensor:
    """[1, heads, tokens, dim] (transformers' layout, the whole batch as one row) -> [tokens, heads * dim]."""
    return x[0].transpose(0, 1).reshape(x.shape[2], -1)


def _check_shapes(layer: RadixAttention, query: torch.Tensor, key: torch.Tensor, name: str) -> None:
    if query.shape[0] != 1:
        raise RuntimeError(f"the transformers fallback runs a batch as one row; {name} got {query.shape[0]}")
    got = (query.shape[1], key.shape[1], query.shape[-1])
    want = (layer.tp_q_head_num, layer.tp_k_head_num, layer.head_dim)
    if got != want:
        raise RuntimeError(f"{name}: transformers computed (q heads, kv heads, head dim) {got}, but the "
                           f"KV cache was sized from config.json as {want}; this architecture's "
                           f"attention does not fit the transformers fallback")


def paged_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                    dropout: float = 0.0, **kwargs: Any) -> Tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q [1, H, T, D], k/v [1, Hkv, T, D] after any rotary;
    returns ([1, T, H, Dv], no weights)."""
    call: Optional[BridgeCall] = kwargs.get(BATCH_KWARG)
    if call is None:
        raise RuntimeError(f"attn_implementation={ATTN_IMPLEMENTATION!r} runs only inside sglang's "
                           f"transformers fallback (it needs the forward batch)")
    layer_idx = getattr(module, "layer_idx", None)
    if layer_idx is None:
        raise RuntimeError(f"{type(module).__name__} has no layer_idx, so the transformers fallback "
                           f"cannot tell which layer's KV cache it reads")
    layer = call.layers[layer_idx]
    _check_shapes(layer, query, key, type(module).__name__)
    # Per-call values some modeling code computes per layer (GPT-2's inverse-layer scaling,
    # Gemma-style soft-capping, Mistral-style windows); the layer object only carries them.
    layer.scaling = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    layer.logit_cap = float(kwargs.get("softcap") or 0.0)
    layer.sliding_window_size = kwargs.get("sliding_window") or None
    tokens = query.shape[2]
    out = call.forward_batch.attn_backend.forward(
        _tokens_major(query), _tokens_major(key), _tokens_major(value), layer, call.forward_batch,
        save_kv_cache=True)
    return out.view(1, tokens, layer.tp_q_head_num, layer.v_head_dim), None


def register_attention() -> str:
    """Register `paged_attention` with transformers (idempotent); returns its implementation name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, paged_attention)
    return ATTN_IMPLEMENTATION
