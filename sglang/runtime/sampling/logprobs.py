"""Logprob helpers for prompt and output tokens.

All values are log_softmax of the RAW model logits: before temperature, penalties, logit bias and
masks. They describe what the model believes, independent of how a request chose to sample, so
they are comparable across requests and match what choice selection (`select`) needs.

`compute_logprobs` does one log_softmax and derives every requested view from it; the three
single-purpose functions are conveniences for callers that need just one view.
Results come back as Python values, with (logprob, token_id) tuples, ready for the detokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from sglang.runtime.host_device import to_device

Entry = Tuple[float, int]  # (logprob, token id)


@dataclass
class LogprobResult:
    token_logprobs: List[float]  # per row: logprob of its chosen / next token
    top_logprobs: List[List[Entry]]  # per row: its top-k, most likely first ([] when k == 0)
    token_ids_logprobs: List[Optional[List[Entry]]]  # per row: the requested ids, or None


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


@dataclass
class LogprobTensors:
    """`compute_logprobs` results still as tensors, so a caller can copy them to the host
    without waiting for the device (overlap scheduling) and convert them later."""

    token_logprobs: torch.Tensor  # [n]
    top_values: Optional[torch.Tensor]  # [n, max k] or None when no row asks for top-k
    top_indices: Optional[torch.Tensor]
    ids_values: Optional[torch.Tensor]  # the requested ids' logprobs, rows concatenated
    top_ks: List[int]
    ids_per_row: List[Optional[List[int]]]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LogprobTensors":
        """The same results with `fn` applied to every tensor (e.g. a host copy)."""

        def opt(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else fn(t)

        return LogprobTensors(fn(self.token_logprobs), opt(self.top_values), opt(self.top_indices),
                              opt(self.ids_values), self.top_ks, self.ids_per_row)

    def result(self) -> LogprobResult:
        """Python values (reads the tensors: call after they are on the host, or accept a sync)."""
        return LogprobResult(
            token_logprobs=self.token_logprobs.tolist(),
            top_logprobs=_top_lists(self.top_values, self.top_indices, self.top_ks),
            token_ids_logprobs=_ids_lists(self.ids_values, self.ids_per_row),
        )


def compute_logprob_tensors(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    top_ks: Optional[Sequence[int]] = None,
    ids_per_row: Optional[Sequence[Optional[Sequence[int]]]] = None,
) -> LogprobTensors:
    """All logprob views for `logits` [n, V] with per-row options (one log_softmax in total),
    computed without reading anything back from the device."""
    n = logits.shape[0]
    _check_rows("token_ids", token_ids.shape[0], n)
    top_ks = [0] * n if top_ks is None else list(top_ks)
    ids_per_row = [None] * n if ids_per_row is None else [None if x is None else list(x) for x in ids_per_row]
    _check_rows("top_ks", len(top_ks), n)
    _check_rows("ids_per_row", len(ids_per_row), n)
    logprobs = log_softmax(logits)
    top_values, top_indices = _top_tensors(logprobs, top_ks)
    return LogprobTensors(
        token_logprobs=_gather_tokens(logprobs, token_ids),
        top_values=top_values,
        top_indices=top_indices,
        ids_values=_ids_tensor(logprobs, ids_per_row),
        top_ks=top_ks,
        ids_per_row=ids_per_row,
    )


def compute_logprobs(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    top_ks: Optional[Sequence[int]] = None,
    ids_per_row: Optional[Sequence[Optional[Sequence[int]]]] = None,
) -> LogprobResult:
    """All logprob views for `logits` [n, V] with per-row options (one log_softmax in total)."""
    return compute_logprob_tensors(logits, token_ids, top_ks, ids_per_row).result()


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[n] logprob of token_ids[i] under row i of `logits` [n, V]."""
    _check_rows("token_ids", token_ids.shape[0], logits.shape[0])
    return _gather_tokens(log_softmax(logits), token_ids)


def top_logprobs(logits: torch.Tensor, ks: Sequence[int]) -> List[List[Entry]]:
    """Per row i its own ks[i] most likely tokens, most likely first."""
    _check_rows("ks", len(ks), logits.shape[0])
    if not any(ks):
        return [[] for _ in ks]
    values, indices = _top_tensors(log_softmax(logits), list(ks))
    return _top_lists(values, indices, list(ks))


def token_ids_logprobs(logits: torch.Tensor, ids_per_row: Sequence[Optional[Sequence[int]]]) -> List[Optional[List[Entry]]]:
    """Per row the logprobs of the given token ids (in the given order); None rows stay None."""
    _check_rows("ids_per_row", len(ids_per_row), logits.shape[0])
    if all(ids is None for ids in ids_per_row):
        return [None] * len(ids_per_row)
    rows = [None if ids is None else list(ids) for ids in ids_per_row]
    return _ids_lists(_ids_tensor(log_softmax(logits), rows), rows)


# -------------------------------------------------------------------- from a log_softmax


def _gather_tokens(logprobs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    ids = token_ids.to(device=logprobs.device, dtype=torch.int64)
    return logprobs.gather(1, ids[:, None]).squeeze(1)


def _top_tensors(logprobs: torch.Tensor, ks: List[int]) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One topk at the largest k (each row later keeps its own prefix); None when no k > 0."""
    if any(k < 0 for k in ks):
        raise ValueError(f"top logprobs counts must be >= 0, got {min(ks)}")
    max_k = min(max(ks, default=0), logprobs.shape[1])
    if max_k == 0:
        return None, None
    return logprobs.topk(max_k, dim=-1)


def _top_lists(values: Optional[torch.Tensor], indices: Optional[torch.Tensor], ks: List[int]) -> List[List[Entry]]:
    if values is None:
        return [[] for _ in ks]
    values, indices = values.tolist(), indices.tolist()
    return [list(zip(values[i][:k], indices[i][:k])) for i, k in enumerate(ks)]


def _ids_tensor(logprobs: torch.Tensor, ids_per_row: List[Optional[List[int]]]) -> Optional[torch.Tensor]:
    """Logprobs of the requested ids, rows concatenated in order; None when no row asks."""
    wanted = [(i, ids) for i, ids in enumerate(ids_per_row) if ids is not None]
    if not wanted:
        return None
    vocab = logprobs.shape[1]
    flat_ids = list(chain.from_iterable(ids for _, ids in wanted))
    bad = [t for t in flat_ids if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"token_ids_logprob entries must be token ids in [0, {vocab}), got {bad[0]}")
    flat_rows = list(chain.from_iterable([i] * len(ids) for i, ids in wanted))
    index = to_device([flat_rows, flat_ids], torch.int64, logprobs.device)
    return logprobs[index[0], index[1]]


def _ids_lists(values: Optional[torch.Tensor], ids_per_row: List[Optional[List[int]]]) -> List[Optional[List[Entry]]]:
    out: List[Optional[List[Entry]]] = [None] * len(ids_per_row)
    if values is None:
        return out
    flat = values.tolist()
    offset = 0
    for i, ids in enumerate(ids_per_row):
        if ids is not None:
            out[i] = list(zip(flat[offset : offset + len(ids)], ids))
            offset += len(ids)
    return out


def _check_rows(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise ValueError(f"{name} has {got} rows but logits have {expected}; give one entry per logits row")
