"""Final hidden states -> vocabulary logits, only for the rows someone will read.

Every request needs logits at its last token (to sample). Input logprobs additionally need the
rows of its prompt from `extend_logprob_start_lens_cpu[i]` on; nothing else is projected, so a
long prefill never materialises [num_tokens, vocab]. Under tensor parallelism each rank projects
onto its vocabulary shard and the shards are all-gathered, so every rank samples from the same full
logits (the ranks must agree on every token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

import torch
from torch import nn

from sglang.runtime.host_device import to_device

if TYPE_CHECKING:
    from sglang.runtime.layers.pooler import PoolerOutput
    from sglang.runtime.layers.vocab_parallel_embedding import VocabParallelEmbedding
    from sglang.runtime.model_executor.forward_batch import ForwardBatch


@dataclass
class LogitsProcessorOutput:
    next_token_logits: torch.Tensor  # [bs, vocab] float32, at each request's last token
    # float32 rows for input logprobs: per request i, extend positions s_i .. L_i - 1, concatenated
    # in batch order; None unless forward_batch.return_logprob in an extend pass.
    input_logits: Optional[torch.Tensor] = None
    # Pooling models (embeddings, rewards): their per-request vectors instead of logits (layers/pooler.py).
    pooled: Optional["PoolerOutput"] = None
    # EAGLE draft heads: their output hidden state at the same rows as next_token_logits (the
    # feature their next step reads).
    hidden_states: Optional[torch.Tensor] = None


def input_logit_row_indices(forward_batch: "ForwardBatch") -> List[int]:
    """Token-dim indices whose logits feed input logprobs (see LogitsProcessorOutput)."""
    lens = forward_batch.extend_seq_lens_cpu
    starts = forward_batch.extend_logprob_start_lens_cpu or [0] * len(lens)
    rows: List[int] = []
    offset = 0
    for n, s in zip(lens, starts):
        if not 0 <= s <= n:
            raise ValueError(f"extend_logprob_start_lens_cpu entry {s} is outside [0, {n}]")
        rows.extend(range(offset + s, offset + n))
        offset += n
    return rows


def soft_cap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return cap * torch.tanh(x / cap)


class LogitsProcessor(nn.Module):
    def __init__(self, vocab_size: int, final_logit_softcapping: Optional[float] = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.final_logit_softcapping = final_logit_softcapping or None
        # Set by `one_token_gemv.apply_one_token_gemv` (--enable-fused-gemv): a single row takes the
        # Triton GEMV, which streamed the vocabulary matrix faster than cuBLAS in isolation.
        self.one_row_gemv = False

    def compute_logits(self, hidden: torch.Tensor, lm_head: "VocabParallelEmbedding") -> torch.Tensor:
        bias = getattr(lm_head, "bias", None)
        if self.one_row_gemv and hidden.shape[0] == 1:
            from sglang.kernels.gemv import gemv

            logits = gemv(hidden.contiguous(), lm_head.weight, bias)
        else:
            logits = lm_head.project(hidden)
        logits = lm_head.tp.all_gather(logits, dim=-1)  # shards in rank order; padding rows last
        logits = logits[:, : self.vocab_size].float()
        if self.final_logit_softcapping:
            logits = soft_cap(logits, self.final_logit_softcapping)
        return logits

    def forward(self, hidden_states: torch.Tensor, lm_head: "VocabParallelEmbedding",
                forward_batch: "ForwardBatch") -> LogitsProcessorOutput:
        mode = forward_batch.forward_mode
        if mode.is_decode():
            return LogitsProcessorOutput(self.compute_logits(hidden_states, lm_head))
        last = forward_batch.last_token_indices()
        if not (forward_batch.return_logprob and mode.is_extend()):
            return LogitsProcessorOutput(self.compute_logits(hidden_states[last], lm_head))
        rows = to_device(input_logit_row_indices(forward_batch), torch.int64, hidden_states.device)
        # One projection for both sets of rows; split afterwards.
        logits = self.compute_logits(hidden_states[torch.cat([rows, last])], lm_head)
        n_input = rows.numel()
        return LogitsProcessorOutput(next_token_logits=logits[n_input:], input_logits=logits[:n_input])
