"""The attention layer models use. It holds per-layer constants and delegates to the backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

if TYPE_CHECKING:
    from sglang.runtime.model_executor.forward_batch import ForwardBatch


class RadixAttention(nn.Module):
    def __init__(
        self,
        num_heads: int,
        head_dim: int,
        scaling: float,
        num_kv_heads: int,
        layer_id: int,
        logit_cap: float = 0.0,
        sliding_window_size: Optional[int] = None,
        v_head_dim: Optional[int] = None,
    ):
        super().__init__()
        self.tp_q_head_num = num_heads
        self.tp_k_head_num = num_kv_heads
        self.tp_v_head_num = num_kv_heads
        self.head_dim = head_dim
        self.qk_head_dim = head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.scaling = scaling
        self.layer_id = layer_id
        # 0 / None mean "off"; the window is the number of most recent keys (incl. the query's own
        # position) a query may see, i.e. key position p is visible iff q_pos - p < window.
        self.logit_cap = logit_cap or 0.0
        self.sliding_window_size = sliding_window_size or None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forward_batch: "ForwardBatch",
                save_kv_cache: bool = True) -> torch.Tensor:
        return forward_batch.attn_backend.forward(q, k, v, self, forward_batch, save_kv_cache)
