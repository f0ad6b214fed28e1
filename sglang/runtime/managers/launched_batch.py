"""A batch whose forward pass and sampling are queued on the device but whose results the host
has not read yet: the unit of overlap scheduling.

The scheduler launches batch N+1 before it reads the results of batch N. What batch N+1 needs of
batch N's tokens stays on the device: its decode inputs name them as rows of `next_ids` (see
`ScheduleBatch.build_decode`). The host copy of the sampled ids (and of output logprobs) is
queued right after sampling, behind one event, so reading them later waits for batch N only,
never for batch N+1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from sglang.runtime.host_device import HostCopies
from sglang.runtime.managers.req import Req
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.sampling.logprobs import LogprobResult, LogprobTensors
from sglang.runtime.sampling.penalties import PendingTokens


@dataclass
class ForwardDone:
    """A forward pass queued on the device whose sampling is not launched yet. Sampling of a
    batch with grammar-constrained requests waits until the previous batch's tokens have been
    accepted by the grammars (its masks depend on them), while this forward pass runs."""

    mode: ForwardMode
    reqs: List[Req]
    logits: torch.Tensor  # [len(reqs), V] next-token logits on the device
    rows: List[int]  # rows to sample
    pending: Optional[PendingTokens] = None  # penalty inputs still in flight
    done_rows: frozenset = frozenset()
    seq: int = 0  # the scheduler's forward_seq of this pass (stale rows: jump_forward_step.py)
    # When `logits` is a selection of the forward pass's rows (catch-up steps): which ones, so
    # tensor-parallel followers, sampling from their own full output, pick the same rows.
    logit_rows: Optional[List[int]] = None

    def has_grammar(self) -> bool:
        return any(self.reqs[i].grammar is not None for i in self.rows)

    def live_reqs(self) -> List[Req]:
        return [r for r in self.reqs if r.is_live()]


@dataclass
class LaunchedBatch:
    seq: int  # launch counter; requests name their pending token as (seq, row)
    reqs: List[Req]
    mode: ForwardMode
    sampled_rows: List[int]  # batch rows that were sampled (not chunks, not max_new_tokens=0)
    next_ids: Optional[torch.Tensor]  # [len(sampled_rows)] int64 on the device
    host_ids: Optional[torch.Tensor]  # its host copy (valid after copies.wait())
    logprobs: Optional[Tuple[List[int], LogprobTensors]]  # sampled-row indices, host tensors
    copies: HostCopies
    needs_sync: bool  # processed right after launch (overlap off)
    done_rows: frozenset = frozenset()  # unsampled rows whose prefill completed (max_new_tokens=0)

    def device_ids(self) -> Optional[Tuple[int, torch.Tensor]]:
        """What a decode batch built before these results are read resolves its inputs from."""
        return None if self.next_ids is None else (self.seq, self.next_ids)

    def read(self) -> Tuple[List[int], Dict[int, int], Optional[LogprobResult]]:
        """Wait for this batch's copies; returns (sampled ids, sampled row -> logprob row,
        logprob results)."""
        self.copies.wait()
        ids = self.host_ids.tolist() if self.host_ids is not None else []
        if self.logprobs is None:
            return ids, {}, None
        rows, tensors = self.logprobs
        return ids, {j: k for k, j in enumerate(rows)}, tensors.result()

    def live_reqs(self) -> List[Req]:
        return [r for r in self.reqs if r.is_live()]
