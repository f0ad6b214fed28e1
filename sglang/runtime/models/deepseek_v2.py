"""DeepSeek-V2 / V3: multi-head latent attention (`layers/mla_attention.py`) and, from layer
`first_k_dense_replace` on, a mixture-of-experts block with always-on shared experts.

Routing: V2 softmax, greedy or group-limited (a group scores its best expert); V3 sigmoid with
grouped top-k over bias-corrected scores. Both scale the weights by `routed_scaling_factor`.
Checkpoint layers past `num_hidden_layers` (V3's multi-token-prediction module) are not used."""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.mla_attention import MLAAttention
from sglang.runtime.layers.moe import MoEBlock, RouterConfig, expert_weight_mapping
from sglang.runtime.models.llama import STACKED_PARAMS, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel

GATE_UP_PARAMS = tuple(entry for entry in STACKED_PARAMS if entry[0] == ".gate_up_proj")
_LAYER_INDEX = re.compile(r"^model\.layers\.(\d+)\.")


def is_moe_layer(config: PretrainedConfig, layer_id: int) -> bool:
    freq = int(getattr(config, "moe_layer_freq", 1) or 1)
    routed = bool(getattr(config, "n_routed_experts", None))
    return routed and layer_id >= config.first_k_dense_replace and layer_id % freq == 0


def v2_router(config: PretrainedConfig) -> RouterConfig:
    grouped = getattr(config, "topk_method", "greedy") == "group_limited_greedy"
    return RouterConfig(config.num_experts_per_tok, renormalize=bool(getattr(config, "norm_topk_prob", False)),
                        num_expert_group=config.n_group if grouped else None,
                        topk_group=config.topk_group if grouped else None, group_score="max",
                        routed_scaling_factor=float(config.routed_scaling_factor))


def v3_router(config: PretrainedConfig) -> RouterConfig:
    return RouterConfig(config.num_experts_per_tok, renormalize=bool(config.norm_topk_prob), scoring_func="sigmoid",
                        num_expert_group=config.n_group, topk_group=config.topk_group,
                        routed_scaling_factor=float(config.routed_scaling_factor))


class DeepseekV2DecoderLayer(LlamaDecoderLayer):
    attention_class = MLAAttention
    v3 = False

    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        # V2 always pairs rope dims; V3 says so in its config.
        return {"interleaved_rope": bool(getattr(config, "rope_interleave", True))}

    def build_mlp(self, config: PretrainedConfig, layer_id: int) -> nn.Module:
        if not is_moe_layer(config, layer_id):
            return LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        shared_size = config.moe_intermediate_size * (getattr(config, "n_shared_experts", 0) or 0)
        shared = LlamaMLP(config.hidden_size, shared_size, config.hidden_act) if shared_size else None
        router = v3_router(config) if self.v3 else v2_router(config)
        return MoEBlock(config.hidden_size, config.n_routed_experts, config.moe_intermediate_size, router,
                        config.hidden_act, shared_expert=shared, correction_bias=self.v3, router_fp32=True)


class DeepseekV3DecoderLayer(DeepseekV2DecoderLayer):
    v3 = True


class DeepseekV2Model(LlamaModel):
    decoder_layer_class = DeepseekV2DecoderLayer


class DeepseekV3Model(LlamaModel):
    decoder_layer_class = DeepseekV3DecoderLayer


class DeepseekV2ForCausalLM(LlamaForCausalLM):
    model_class = DeepseekV2Model

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.stacked_params = (*expert_weight_mapping(config.n_routed_experts or 0), *GATE_UP_PARAMS)

    def skip_weight(self, name: str) -> bool:
        layer = _LAYER_INDEX.match(name)
        if layer and int(layer.group(1)) >= self.config.num_hidden_layers:
            return True  # multi-token-prediction layers
        return super().skip_weight(name)

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        super().load_weights((name.replace(".mlp.shared_experts.", ".mlp.shared_expert."), w) for name, w in weights)


class DeepseekV3ForCausalLM(DeepseekV2ForCausalLM):
    model_class = DeepseekV3Model
