"""The default method: weights in the model dtype, torch's matmul and embedding lookup."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.layers.quantization.base import EmbeddingMethod, LinearMethod


def _new_weight(layer: nn.Module, shape: tuple, dtype: torch.dtype) -> None:
    layer.weight = nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)
    layer.weight.weight_loader = layer.weight_loader


class UnquantizedLinearMethod(LinearMethod):
    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        _new_weight(layer, (layer.out_features, layer.in_features), params_dtype)

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return F.linear(x, layer.weight, bias)


class UnquantizedEmbeddingMethod(EmbeddingMethod):
    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        _new_weight(layer, (layer.rows_per_rank, layer.embedding_dim), params_dtype)

    def embedding(self, layer: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, layer.weight)

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return F.linear(x, layer.weight, bias)
