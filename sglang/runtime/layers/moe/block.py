"""A mixture-of-experts feed-forward block: router, routed experts, optional shared expert.

    out = sum_j w_j * expert_{e_j}(x)  [+ sigmoid(shared_gate(x)) * shared_expert(x)]

The router (`gate`, replicated on every rank) scores the experts; `select_experts` picks each
token's k; `FusedMoE` runs them. The shared expert is any module the model file builds (a Llama
MLP for Qwen2-MoE and DeepSeek), and is gated only where the family has a shared-expert gate.
Parameter names follow the checkpoints: `gate` (with DeepSeek-V3's `e_score_correction_bias`),
`experts`, `shared_expert`, `shared_expert_gate`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.layers.linear import ReplicatedLinear
from sglang.runtime.layers.moe.fused_moe import FusedMoE
from sglang.runtime.layers.moe.router import RouterConfig, select_experts


class MoEBlock(nn.Module):
    def __init__(self, hidden_size: int, num_experts: int, intermediate_size: int, router: RouterConfig,
                 hidden_act: str = "silu", shared_expert: Optional[nn.Module] = None,
                 shared_expert_gate: bool = False, correction_bias: bool = False, router_fp32: bool = False):
        super().__init__()
        self.router = router
        self.gate = ReplicatedLinear(hidden_size, num_experts, bias=False)
        if correction_bias:  # steers the choice of experts only (float32 as in the checkpoints)
            self.gate.e_score_correction_bias = nn.Parameter(torch.zeros(num_experts, dtype=torch.float32),
                                                             requires_grad=False)
        self.router_fp32 = router_fp32  # DeepSeek scores experts in float32 whatever the model dtype
        self.experts = FusedMoE(num_experts, hidden_size, intermediate_size, hidden_act)
        self.shared_expert = shared_expert
        self.shared_expert_gate = ReplicatedLinear(hidden_size, 1, bias=False) if shared_expert_gate else None
        for router in (self.gate, self.shared_expert_gate):
            if router is not None:  # routing stays float: published FP8 MoE checkpoints keep it so
                router.keep_float = True

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights [T, k], expert ids [T, k]) for hidden states x [T, H]."""
        if self.router_fp32:
            logits = F.linear(x.float(), self.gate.weight.float())
        else:
            logits = self.gate(x)
        return select_experts(logits, self.router, getattr(self.gate, "e_score_correction_bias", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = self.route(x)
        out = self.experts(x, weights, ids)
        if self.shared_expert is not None:
            shared = self.shared_expert(x)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(x)) * shared
            out = out + shared
        return out
