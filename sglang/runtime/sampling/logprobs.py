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
from typing import List, Optional, Sequence, Tuple

import torch

Entry = Tuple[float, int]  # (logprob, token id)


@dataclass
class LogprobResult:
    token_logprobs: List[float]  # per row: logprob of its chosen / next token
    top_logprobs: List[List[Entry]]  # per row: its top-k, most likely first ([] when k == 0)
    token_ids_logprobs: List[Optional[List[Entry]]]  # per row: the requested ids, or None


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)


def compute_logprobs(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    top_ks: Optional[Sequence[int]] = None,
    ids_per_row: Optional[Sequence[Optional[Sequence[int]]]] = None,
) -> LogprobResult:
    """All logprob views for `logits` [n, V] with per-row options (one log_softmax in total)."""
    n = logits.shape[0]
    _check_rows("token_ids", token_ids.shape[0], n)
    top_ks = [0] * n if top_ks is None else list(top_ks)
    ids_per_row = [None] * n if ids_per_row is None else list(ids_per_row)
    _check_rows("top_ks", len(top_ks), n)
    _check_rows("ids_per_row", len(ids_per_row), n)
    logprobs = log_softmax(logits)
    return LogprobResult(
        token_logprobs=_gather_tokens(logprobs, token_ids).tolist(),
        top_logprobs=_top_from_logprobs(logprobs, top_ks),
        token_ids_logprobs=_ids_from_logprobs(logprobs, ids_per_row),
    )


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """[n] logprob of token_ids[i] under row i of `logits` [n, V]."""
    _check_rows("token_ids", token_ids.shape[0], logits.shape[0])
    return _gather_tokens(log_softmax(logits), token_ids)


def top_logprobs(logits: torch.Tensor, ks: Sequence[int]) -> List[List[Entry]]:
    """Per row i its own ks[i] most likely tokens, most likely first."""
    _check_rows("ks", len(ks), logits.shape[0])
    if not any(ks):
        return [[] for _ in ks]
    return _top_from_logprobs(log_softmax(logits), list(ks))


def token_ids_logprobs(logits: torch.Tensor, ids_per_row: Sequence[Optional[Sequence[int]]]) -> List[Optional[List[Entry]]]:
    """Per row the logprobs of the given token ids (in the given order); None rows stay None."""
    _check_rows("ids_per_row", len(ids_per_row), logits.shape[0])
    if all(ids is None for ids in ids_per_row):
        return [None] * len(ids_per_row)
    return _ids_from_logprobs(log_softmax(logits), list(ids_per_row))


# -------------------------------------------------------------------- from a log_softmax


def _gather_tokens(logprobs: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    ids = token_ids.to(device=logprobs.device, dtype=torch.int64)
    return logprobs.gather(1, ids[:, None]).squeeze(1)


def _top_from_logprobs(logprobs: torch.Tensor, ks: List[int]) -> List[List[Entry]]:
    if any(k < 0 for k in ks):
        raise ValueError(f"top logprobs counts must be >= 0, got {min(ks)}")
    max_k = min(max(ks, default=0), logprobs.shape[1])
    if max_k == 0:
        return [[] for _ in ks]
    # One topk at the largest k; each row keeps its own prefix. One device->host copy.
    values, indices = logprobs.topk(max_k, dim=-1)
    values, indices = values.tolist(), indices.tolist()
    return [list(zip(values[i][:k], indices[i][:k])) for i, k in enumerate(ks)]


def _ids_from_logprobs(logprobs: torch.Tensor, ids_per_row: List[Optional[Sequence[int]]]) -> List[Optional[List[Entry]]]:
    vocab = logprobs.shape[1]
    wanted = [(i, list(ids)) for i, ids in enumerate(ids_per_row) if ids is not None]
    if not wanted:
        return [None] * len(ids_per_row)
    flat_ids = list(chain.from_iterable(ids for _, ids in wanted))
    bad = [t for t in flat_ids if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"token_ids_logprob entries must be token ids in [0, {vocab}), got {bad[0]}")
    flat_rows = list(chain.from_iterable([i] * len(ids) for i, ids in wanted))
    device = logprobs.device
    values = logprobs[torch.tensor(flat_rows, dtype=torch.int64, device=device),
                      torch.tensor(flat_ids, dtype=torch.int64, device=device)].tolist()
    out: List[Optional[List[Entry]]] = [None] * len(ids_per_row)
    offset = 0
    for i, ids in wanted:
        out[i] = list(zip(values[offset : offset + len(ids)], ids))
        offset += len(ids)
    return out


def _check_rows(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise ValueError(f"{name} has {got} rows but logits have {expected}; give one entry per logits row")
