"""Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): Qwen2's attention with a mixture-of-experts block of
softmax-routed experts plus one shared expert behind a sigmoid gate. Layers listed in
`mlp_only_layers`, or off the `decoder_sparse_step` grid, keep a dense MLP."""

from __future__ import annotations

from typing import Any, Dict

from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.moe import MoEBlock, RouterConfig, expert_weight_mapping
from sglang.runtime.models.llama import STACKED_PARAMS, LlamaForCausalLM, LlamaMLP, LlamaModel
from sglang.runtime.models.qwen2 import Qwen2DecoderLayer, qwen_sliding_window


def num_experts_of(config: PretrainedConfig) -> int:
    return int(getattr(config, "num_experts", None) or getattr(config, "num_local_experts", 0) or 0)


def is_sparse_layer(config: PretrainedConfig, layer_id: int) -> bool:
    step = int(getattr(config, "decoder_sparse_step", 1) or 1)
    return (layer_id not in (getattr(config, "mlp_only_layers", None) or [])
            and num_experts_of(config) > 0 and (layer_id + 1) % step == 0)


def qwen_moe_mlp(config: PretrainedConfig, layer_id: int, shared_expert: bool) -> nn.Module:
    """The layer's feed-forward: a dense MLP, or experts (+ the gated shared expert)."""
    if not is_sparse_layer(config, layer_id):
        return LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
    shared = None
    if shared_expert and getattr(config, "shared_expert_intermediate_size", 0):
        shared = LlamaMLP(config.hidden_size, config.shared_expert_intermediate_size, config.hidden_act)
    router = RouterConfig(config.num_experts_per_tok, renormalize=bool(config.norm_topk_prob))
    return MoEBlock(config.hidden_size, num_experts_of(config), config.moe_intermediate_size, router,
                    config.hidden_act, shared_expert=shared, shared_expert_gate=shared is not None)


class Qwen2MoeDecoderLayer(Qwen2DecoderLayer):
    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        return {"qkv_bias": bool(getattr(config, "qkv_bias", True)), "o_bias": False,
                "sliding_window": qwen_sliding_window(config, layer_id)}

    def build_mlp(self, config: PretrainedConfig, layer_id: int) -> nn.Module:
        return qwen_moe_mlp(config, layer_id, shared_expert=True)


class Qwen2MoeModel(LlamaModel):
    decoder_layer_class = Qwen2MoeDecoderLayer


class Qwen2MoeForCausalLM(LlamaForCausalLM):
    model_class = Qwen2MoeModel

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.stacked_params = (*expert_weight_mapping(num_experts_of(config)), *STACKED_PARAMS)
