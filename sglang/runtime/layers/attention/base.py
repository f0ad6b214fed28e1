"""Attention-backend interface.

A backend is created once per model runner. Per batch, `init_forward_metadata` derives whatever
index tensors it needs from the ForwardBatch (kept in `forward_batch.attn_metadata`); then every
attention layer calls `forward`, which writes the new K/V into the pool at `out_cache_loc` and
attends over the request's whole sequence (cached prefix + new tokens).

CUDA-graph hooks (`init_cuda_graph_state`, `init_forward_metadata_capture/replay`) are optional:
backends that do not support graphs leave them raising, and the graph runner is then disabled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sglang.runtime.layers.attention.radix_attention import RadixAttention
    from sglang.runtime.model_executor.forward_batch import ForwardBatch


class AttentionBackend(ABC):
    supports_cuda_graph: bool = False

    @abstractmethod
    def init_forward_metadata(self, forward_batch: "ForwardBatch") -> None:
        """Prepare per-batch metadata (called once per forward, before any layer runs)."""

    def forward(
        self,
        q: torch.Tensor,  # [num_tokens, num_heads * head_dim]
        k: torch.Tensor,  # [num_tokens, num_kv_heads * head_dim]
        v: torch.Tensor,  # [num_tokens, num_kv_heads * v_head_dim]
        layer: "RadixAttention",
        forward_batch: "ForwardBatch",
        save_kv_cache: bool = True,
    ) -> torch.Tensor:  # [num_tokens, num_heads * v_head_dim]
        if forward_batch.forward_mode.is_decode():
            return self.forward_decode(q, k, v, layer, forward_batch, save_kv_cache)
        return self.forward_extend(q, k, v, layer, forward_batch, save_kv_cache)

    @abstractmethod
    def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True) -> torch.Tensor: ...

    @abstractmethod
    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True) -> torch.Tensor: ...

    # ---- CUDA graph hooks (optional) ----
    def init_cuda_graph_state(self, max_bs: int) -> None:
        raise RuntimeError(f"{type(self).__name__} does not support CUDA graphs")

    def init_forward_metadata_capture(self, forward_batch: "ForwardBatch") -> None:
        raise RuntimeError(f"{type(self).__name__} does not support CUDA graphs")

    def init_forward_metadata_replay(self, forward_batch: "ForwardBatch") -> None:
        raise RuntimeError(f"{type(self).__name__} does not support CUDA graphs")
