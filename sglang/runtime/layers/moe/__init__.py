"""Mixture-of-experts layers: routing (`router`), the experts' computation (`experts_torch`),
the stacked-expert layer with its weight loader (`fused_moe`) and the feed-forward block models
use (`block`)."""

from sglang.runtime.layers.moe.block import MoEBlock
from sglang.runtime.layers.moe.fused_moe import FusedMoE, expert_weight_mapping
from sglang.runtime.layers.moe.router import RouterConfig, select_experts

__all__ = ["FusedMoE", "MoEBlock", "RouterConfig", "expert_weight_mapping", "select_experts"]
