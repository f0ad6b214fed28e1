"""Mixtral: Mistral's attention with a sparse mixture-of-experts feed-forward in every layer
(softmax router, top-k renormalized; checkpoint names `block_sparse_moe.experts.{e}.w1|w2|w3`)."""

from __future__ import annotations

from typing import Iterable, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.moe import MoEBlock, RouterConfig, expert_weight_mapping
from sglang.runtime.models.llama import STACKED_PARAMS, LlamaForCausalLM, LlamaModel
from sglang.runtime.models.mistral import MistralDecoderLayer


class MixtralDecoderLayer(MistralDecoderLayer):
    def build_mlp(self, config: PretrainedConfig, layer_id: int) -> nn.Module:
        return MoEBlock(config.hidden_size, config.num_local_experts, config.intermediate_size,
                        RouterConfig(config.num_experts_per_tok, renormalize=True), config.hidden_act)


class MixtralModel(LlamaModel):
    decoder_layer_class = MixtralDecoderLayer


class MixtralForCausalLM(LlamaForCausalLM):
    model_class = MixtralModel

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.stacked_params = (*expert_weight_mapping(config.num_local_experts, "w1", "w2", "w3"),
                               *STACKED_PARAMS)

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        super().load_weights((name.replace(".block_sparse_moe.", ".mlp."), w) for name, w in weights)
