"""SamplingBatchInfo: the batch's sampling parameters as device tensors, built once per step.

Flags (`is_all_greedy`, `need_top_k`, ...) are computed on the host from the requests, so the
sampler can choose its code path without reading device values (no syncs, CUDA-graph friendly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Set, Union

import torch

from sglang.runtime.host_device import to_device
from sglang.runtime.sampling.penalties import (
    PendingTokens,
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
        cls, reqs: Sequence[SamplingReq], vocab_size: int, device: Union[str, torch.device],
        pending: Optional[PendingTokens] = None,
    ) -> "SamplingBatchInfo":
        """`pending`: rows whose newest output token is still on the device (overlap scheduling);
        it counts for the step and min_new_tokens, and enters the penalties on the device."""
        device = torch.device(device)
        params = [r.sampling_params for r in reqs]
        # Near-zero temperature is greedy even if normalize() was skipped (avoids dividing by 0).
        greedy = [p.top_k == 1 or p.temperature < GREEDY_TEMPERATURE_EPS for p in params]
        top_ks = [1 if g else _effective_top_k(p.top_k, vocab_size) for p, g in zip(params, greedy)]
        sampled = [i for i, g in enumerate(greedy) if not g]
        num_out = [len(r.output_ids) for r in reqs]
        for i in (pending.rows if pending is not None else ()):
            num_out[i] += 1
        # An all-greedy batch is an argmax: its per-row tensors stay on the host (no copies).
        row_device = device if sampled else torch.device("cpu")
        # Three copies (floats, ints, flags) rather than one per field; none blocks the host.
        floats = to_device([[1.0 if g else float(p.temperature) for p, g in zip(params, greedy)],
                            [float(p.top_p) for p in params], [float(p.min_p) for p in params]],
                           torch.float32, row_device)
        ints = to_device([top_ks, [wrap_seed(r.seed) for r in reqs], num_out], torch.int64, row_device)
        return cls(
            batch_size=len(reqs),
            vocab_size=vocab_size,
            temperatures=floats[0],
            top_ps=floats[1],
            top_ks=ints[0],
            min_ps=floats[2],
            seeds=ints[1],
            steps=ints[2],
            greedy_mask=to_device(greedy, torch.bool, row_device),
            is_all_greedy=not sampled,
            need_top_p=any(params[i].top_p < 1.0 for i in sampled),
            need_top_k=any(top_ks[i] < vocab_size for i in sampled),
            need_min_p=any(params[i].min_p > 0.0 for i in sampled),
            max_top_k=max((top_ks[i] for i in sampled), default=1),
            penalties=PenaltyState.build(reqs, vocab_size, device, pending),
            logit_bias=build_logit_bias(reqs, vocab_size, device),
            min_tokens_mask=build_min_tokens_mask(reqs, vocab_size, device, num_out),
        )


def _effective_top_k(top_k: int, vocab_size: int) -> int:
    return vocab_size if top_k < 1 or top_k > vocab_size else top_k
