"""Token embedding and LM head, split over the vocabulary for tensor parallelism.

Rank r holds rows [r * rows_per_rank, (r + 1) * rows_per_rank) of the (padded) vocabulary. With
tp_size == 1 that is the whole table. Rows past the real vocabulary are zero padding; logits for
them are sliced off by the logits processor after it gathers every rank's shard. A lookup embeds
the ids in this rank's range, zeroes the others and sums over ranks (all-reduce).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from sglang.runtime.distributed.lazy_weight import WeightLike, materialize, reads_slices
from sglang.runtime.distributed.tensor_parallel import resolve_tensor_parallel
from sglang.runtime.layers.linear import ShardId, check_full_shape
from sglang.runtime.layers.quantization.base import EmbeddingMethod
from sglang.runtime.layers.quantization.unquantized import UnquantizedEmbeddingMethod


class VocabParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, tp_rank: Optional[int] = None,
                 tp_size: Optional[int] = None, params_dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.tp = resolve_tensor_parallel(tp_rank, tp_size)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.tp_rank, self.tp_size = self.tp.rank, self.tp.size
        self.rows_per_rank = -(-num_embeddings // self.tp_size)
        # A tiny vocabulary over many ranks can leave the last ranks all padding (start == end).
        self.vocab_start = min(self.tp_rank * self.rows_per_rank, num_embeddings)
        self.vocab_end = min(self.vocab_start + self.rows_per_rank, num_embeddings)
        dtype = params_dtype or torch.get_default_dtype()
        self.params_dtype = dtype
        self.quant_method: EmbeddingMethod = UnquantizedEmbeddingMethod()
        self.quant_method.create_weights(self, dtype)

    def set_quant_method(self, method: EmbeddingMethod) -> None:
        """Store, look up and project with `method` (replaces the weight parameter; load after)."""
        self.quant_method = method
        method.create_weights(self, self.params_dtype)

    def _copy_vocab_rows(self, param: nn.Parameter, loaded: WeightLike) -> None:
        rows = self.vocab_end - self.vocab_start
        with torch.no_grad():
            param.data[:rows].copy_(materialize(loaded[self.vocab_start : self.vocab_end]))
            param.data[rows:].zero_()

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        check_full_shape(loaded, (self.num_embeddings, self.embedding_dim), "embedding")
        self._copy_vocab_rows(param, loaded)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return self.quant_method.embedding(self, input_ids)
        outside = (input_ids < self.vocab_start) | (input_ids >= self.vocab_end)
        local = torch.where(outside, 0, input_ids - self.vocab_start)
        embedded = self.quant_method.embedding(self, local)
        embedded = embedded.masked_fill(outside.unsqueeze(-1), 0)
        return self.tp.all_reduce(embedded)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [tokens, embedding_dim] -> logits over this rank's rows (the LM head's matmul)."""
        return self.quant_method.apply(self, hidden, getattr(self, "bias", None))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tp={self.tp_rank}/{self.tp_size}"


class ParallelLMHead(VocabParallelEmbedding):
    """Output projection to vocabulary logits. Its weight is read by the LogitsProcessor."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bias: bool = False,
                 tp_rank: Optional[int] = None, tp_size: Optional[int] = None,
                 params_dtype: Optional[torch.dtype] = None):
        super().__init__(num_embeddings, embedding_dim, tp_rank, tp_size, params_dtype)
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.rows_per_rank, dtype=self.weight.dtype),
                                     requires_grad=False)
            self.bias.weight_loader = self._bias_loader
        else:
            self.register_parameter("bias", None)

    @reads_slices
    def _bias_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        check_full_shape(loaded, (self.num_embeddings,), "lm_head bias")
        self._copy_vocab_rows(param, loaded)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("ParallelLMHead is not called directly; LogitsProcessor applies its weight")
