"""SamplingBatchInfo: the batch's sampling parameters as device tensors, built once per step.

Flags (`is_all_greedy`, `need_top_k`, ...) are computed on the host from the requests, so the
sampler can choose its code path without reading device values (no syncs, CUDA-graph friendly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Set, Union

import torch

from sglang.runtime.sampling.penalties import (
    PenaltyState,
    TokenEdits,
    build_logit_bias,
    build_min_tokens_mask,
)
from sglang.runtime.sampling.sampling_params import GREEDY_TEMPERATURE_EPS, SamplingParams


class SamplingReq(Protocol):
    """What a request must expose to be sampled (the scheduler's Req satisfies it)."""

    sampling_params: SamplingParams
    origin_input_ids: List[int]
    output_ids: List[int]
    seed: int  # always set: the scheduler draws one for unseeded requests
    eos_token_ids: Set[int]  # tokens that end generation (model EOS unless ignore_eos, + stop_token_ids)


def wrap_seed(seed: int) -> int:
    """Any Python int -> int64 with the same low 64 bits (the sampler hashes all 64)."""
    value = seed % (1 << 64)
    return value - (1 << 64) if value >= (1 << 63) else value


@dataclass
class SamplingBatchInfo:
    batch_size: int
    vocab_size: int
    temperatures: torch.Tensor  # [bs] float32 (1.0 on greedy rows)
    top_ps: torch.Tensor  # [bs] float32
    top_ks: torch.Tensor  # [bs] int64, in [1, vocab_size] (-1 stored as vocab_size)
    min_ps: torch.Tensor  # [bs] float32
    seeds: torch.Tensor  # [bs] int64
    steps: torch.Tensor  # [bs] int64: output position being sampled (= len(output_ids))
    greedy_mask: torch.Tensor  # [bs] bool: rows decided by argmax
    is_all_greedy: bool
    need_top_p: bool
    need_top_k: bool
    need_min_p: bool
    max_top_k: int  # largest top_k among sampled rows (bounds torch.topk when top-p is off)
    penalties: Optional[PenaltyState] = None
    logit_bias: Optional[TokenEdits] = None
    min_tokens_mask: Optional[TokenEdits] = None
    # Set by structured generation: [bs, V] bool, True where a token is allowed.
    allowed_token_mask: Optional[torch.Tensor] = None

    @property
    def has_penalties(self) -> bool:
        return self.penalties is not None

    @property
    def has_logit_bias(self) -> bool:
        return self.logit_bias is not None

    @property
    def needs_logits_processing(self) -> bool:
        return (
            self.penalties is not None
            or self.logit_bias is not None
            or self.min_tokens_mask is not None
            or self.allowed_token_mask is not None
        )

    @classmethod
    def from_reqs(
        cls, reqs: Sequence[SamplingReq], vocab_size: int, device: Union[str, torch.device]
    ) -> "SamplingBatchInfo":
        device = torch.device(device)
        params = [r.sampling_params for r in reqs]
        # Near-zero temperature is greedy even if normalize() was skipped (avoids dividing by 0).
        greedy = [p.top_k == 1 or p.temperature < GREEDY_TEMPERATURE_EPS for p in params]
        top_ks = [1 if g else _effective_top_k(p.top_k, vocab_size) for p, g in zip(params, greedy)]
        sampled = [i for i, g in enumerate(greedy) if not g]
        # An all-greedy batch is an argmax: its per-row tensors stay on the host (no copies).
        row_device = device if sampled else torch.device("cpu")

        def floats(values: List[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=row_device)

        def ints(values: List[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int64, device=row_device)

        return cls(
            batch_size=len(reqs),
            vocab_size=vocab_size,
            temperatures=floats([1.0 if g else float(p.temperature) for p, g in zip(params, greedy)]),
            top_ps=floats([float(p.top_p) for p in params]),
            top_ks=ints(top_ks),
            min_ps=floats([float(p.min_p) for p in params]),
            seeds=ints([wrap_seed(r.seed) for r in reqs]),
            steps=ints([len(r.output_ids) for r in reqs]),
            greedy_mask=torch.tensor(greedy, dtype=torch.bool, device=row_device),
            is_all_greedy=not sampled,
            need_top_p=any(params[i].top_p < 1.0 for i in sampled),
            need_top_k=any(top_ks[i] < vocab_size for i in sampled),
            need_min_p=any(params[i].min_p > 0.0 for i in sampled),
            max_top_k=max((top_ks[i] for i in sampled), default=1),
            penalties=PenaltyState.build(reqs, vocab_size, device),
            logit_bias=build_logit_bias(reqs, vocab_size, device),
            min_tokens_mask=build_min_tokens_mask(reqs, vocab_size, device),
        )


def _effective_top_k(top_k: int, vocab_size: int) -> int:
    return vocab_size if top_k < 1 or top_k > vocab_size else top_k
