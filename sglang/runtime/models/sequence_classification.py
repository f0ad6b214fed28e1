"""Reward / classification models (`LlamaForSequenceClassification`, e.g. Skywork-Reward;
`Qwen2ForSequenceClassification`): the backbone's final hidden state at the last token through
the `score` head, one value per label.

transformers scores the last token that is not `pad_token_id`; prompts here are never padded,
so that is the last token (a prompt ending in pad tokens would differ).
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.layers.pooler import Pooler, PoolingConfig, pooled_output
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.llama import ROTARY_BUFFERS, LlamaForCausalLM
from sglang.runtime.models.qwen2 import Qwen2ForCausalLM
from sglang.runtime.models.weight_utils import load_named_weights

# Scores are raw head outputs: never normalized, whatever a pooling override says.
SCORE_POOLING = PoolingConfig("last", normalize=False)


class LlamaForSequenceClassification(nn.Module):
    is_pooling_model = True
    supports_cuda_graph = False  # prefill only: no decode step to capture
    causal_class = LlamaForCausalLM  # gives the backbone class and its fused-tensor mapping

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.model = self.causal_class.model_class(config)
        self.num_labels = int(getattr(config, "num_labels", 1))
        self.score = nn.Linear(config.hidden_size, self.num_labels, bias=False)
        self.pooler = Pooler(SCORE_POOLING)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> LogitsProcessorOutput:
        hidden_states = self.model(input_ids, positions, forward_batch, input_embeds=input_embeds)
        pooled = self.pooler(hidden_states, forward_batch)
        pooled.vectors = self.score(pooled.vectors.to(self.score.weight.dtype)).float()
        return pooled_output(pooled)

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        load_named_weights(self, weights, self.causal_class.stacked_params,
                           skip=lambda name: any(buf in name for buf in ROTARY_BUFFERS))


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    causal_class = Qwen2ForCausalLM
