"""Logits processors: penalties, logit bias and the min_new_tokens EOS mask.

Each piece is built only when some request in the batch needs it, so the common batch (no
penalties, no bias) pays nothing. Index tensors are assembled on the host from Python lists and
copied to the device once; nothing here reads device values back (no syncs).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sglang.runtime.host_device import host_to_device, to_device
from sglang.runtime.sampling.sampling_params import parse_token_id

if TYPE_CHECKING:
    from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo, SamplingReq


def _scatter_index(
    rows: Sequence[int], id_lists: Sequence[Sequence[int]], vocab_size: int, device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(row, token id) index pairs for `id_lists[j]` placed in batch row `rows[j]`."""
    lens = [len(x) for x in id_lists]
    # np.fromiter reads the Python ints without building an intermediate list.
    ids = torch.from_numpy(np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=sum(lens)))
    row_idx = torch.repeat_interleave(torch.tensor(list(rows), dtype=torch.int64), torch.tensor(lens, dtype=torch.int64))
    keep = (ids >= 0) & (ids < vocab_size)  # ids beyond the logits width cannot be penalized
    return host_to_device(row_idx[keep], device), host_to_device(ids[keep], device)


def _set(t: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, value) -> None:
    """t[rows, ids] = value. Indexed assignment of a Python scalar copies it from the host with a
    blocking copy on CUDA; a device-side fill does not."""
    t.index_put_((rows, ids), torch.full(ids.shape, value, dtype=t.dtype, device=t.device))


@dataclass
class PendingTokens:
    """Output tokens sampled on the device but not yet in the requests' output_ids (overlap
    scheduling): `ids[j]` is the newest token of batch row `rows[j]`."""

    rows: List[int]
    ids: torch.Tensor  # [len(rows)] int64, on the logits' device


@dataclass
class PenaltyState:
    """Frequency/presence penalties count output tokens; repetition penalty (Hugging Face
    semantics) looks at every token seen so far, prompt included."""

    frequency: torch.Tensor  # [bs, 1] float32
    presence: torch.Tensor  # [bs, 1] float32
    repetition: torch.Tensor  # [bs, 1] float32
    output_counts: Optional[torch.Tensor]  # [bs, V] float32; None if no additive penalty
    seen_mask: Optional[torch.Tensor]  # [bs, V] bool; None if no repetition penalty

    @classmethod
    def build(cls, reqs: Sequence["SamplingReq"], vocab_size: int, device: torch.device,
              pending: Optional[PendingTokens] = None) -> Optional["PenaltyState"]:
        params = [r.sampling_params for r in reqs]
        additive = [i for i, p in enumerate(params) if p.frequency_penalty != 0.0 or p.presence_penalty != 0.0]
        repetitive = [i for i, p in enumerate(params) if p.repetition_penalty != 1.0]
        if not additive and not repetitive:
            return None
        bs = len(reqs)

        def column(name: str) -> torch.Tensor:
            return to_device([float(getattr(p, name)) for p in params], torch.float32, device)[:, None]

        counts = seen = None
        if additive:
            counts = torch.zeros((bs, vocab_size), dtype=torch.float32, device=device)
            rows, ids = _scatter_index(additive, [reqs[i].output_ids for i in additive], vocab_size, device)
            counts.index_put_((rows, ids), torch.ones_like(ids, dtype=torch.float32), accumulate=True)
        if repetitive:
            seen = torch.zeros((bs, vocab_size), dtype=torch.bool, device=device)
            # Prompt and output as separate lists of the same row: no concatenated copy.
            row_of_list = [i for i in repetitive for _ in range(2)]
            id_lists = [ids for i in repetitive for ids in (reqs[i].origin_input_ids, reqs[i].output_ids)]
            rows, ids = _scatter_index(row_of_list, id_lists, vocab_size, device)
            _set(seen, rows, ids, True)
        if pending is not None and pending.rows:
            # Every pending row gets its token; rows without that penalty have a zero weight for it.
            rows = to_device(pending.rows, torch.int64, device)
            if counts is not None:
                counts.index_put_((rows, pending.ids), torch.ones_like(pending.ids, dtype=torch.float32),
                                  accumulate=True)
            if seen is not None:
                _set(seen, rows, pending.ids, True)
        return cls(column("frequency_penalty"), column("presence_penalty"), column("repetition_penalty"), counts, seen)

    def apply(self, logits: torch.Tensor) -> None:
        if self.seen_mask is not None:
            # HF semantics: shrink positive logits, push negative ones further down.
            scaled = torch.where(logits > 0, logits / self.repetition, logits * self.repetition)
            torch.where(self.seen_mask, scaled, logits, out=logits)
        if self.output_counts is not None:
            logits -= self.frequency * self.output_counts
            logits -= self.presence * (self.output_counts > 0).to(logits.dtype)


@dataclass
class TokenEdits:
    """Sparse per-(row, token) edits: add `values` (logit bias) or set to -inf (masks)."""

    rows: torch.Tensor  # int64
    ids: torch.Tensor  # int64
    values: Optional[torch.Tensor] = None  # float32; None means "mask to -inf"

    def apply(self, logits: torch.Tensor) -> None:
        if self.values is None:
            _set(logits, self.rows, self.ids, float("-inf"))
        else:
            logits.index_put_((self.rows, self.ids), self.values, accumulate=True)


def build_logit_bias(reqs: Sequence["SamplingReq"], vocab_size: int, device: torch.device) -> Optional[TokenEdits]:
    rows: List[int] = []
    ids: List[int] = []
    values: List[float] = []
    for i, req in enumerate(reqs):
        for key, value in (req.sampling_params.logit_bias or {}).items():
            tid = parse_token_id(key)
            if tid is None or not 0 <= tid < vocab_size:
                raise ValueError(f"logit_bias key {key!r} is not a token id in [0, {vocab_size}); call verify() first")
            rows.append(i)
            ids.append(tid)
            values.append(float(value))
    if not rows:
        return None
    index = to_device([rows, ids], torch.int64, device)
    return TokenEdits(index[0], index[1], to_device(values, torch.float32, device))


def build_min_tokens_mask(reqs: Sequence["SamplingReq"], vocab_size: int, device: torch.device,
                          num_out: Optional[Sequence[int]] = None) -> Optional[TokenEdits]:
    """Forbid every ending token of requests that have not yet produced min_new_tokens
    (`num_out[i]`: tokens row i has produced, default len(output_ids))."""
    if num_out is None:
        num_out = [len(r.output_ids) for r in reqs]
    rows = [i for i, r in enumerate(reqs) if num_out[i] < r.sampling_params.min_new_tokens and r.eos_token_ids]
    if not rows:
        return None
    row_idx, ids = _scatter_index(rows, [sorted(reqs[i].eos_token_ids) for i in rows], vocab_size, device)
    return TokenEdits(row_idx, ids)


def apply_logits_processors(logits: torch.Tensor, info: "SamplingBatchInfo") -> torch.Tensor:
    """Apply penalties, then logit bias, then hard masks, in place; returns `logits`.

    Masks go last so that no bias or penalty can revive a forbidden token. A grammar mask
    overrides min_new_tokens when the two together would leave a row with no token.
    """
    check_logits_shape(logits, info)
    if logits.dtype != torch.float32:
        raise ValueError(f"logits processors expect float32 logits, got {logits.dtype}; cast with logits.float()")
    if info.penalties is not None:
        info.penalties.apply(logits)
    if info.logit_bias is not None:
        info.logit_bias.apply(logits)
    allowed = info.allowed_token_mask
    grammar_only = None
    if info.min_tokens_mask is not None:
        if allowed is not None:
            grammar_only = logits.masked_fill(~allowed, float("-inf"))
        info.min_tokens_mask.apply(logits)
    if allowed is not None:
        logits.masked_fill_(~allowed, float("-inf"))
    if grammar_only is not None:
        # The grammar wins over min_new_tokens: where the grammar allows only what min_new_tokens
        # forbids (its text is complete, only EOS may follow), keep the grammar's choice and let
        # the request end early instead of sampling from a row with nothing allowed.
        dead = torch.isneginf(logits).all(dim=-1, keepdim=True)
        logits.copy_(torch.where(dead, grammar_only, logits))
    return logits


def check_logits_shape(logits: torch.Tensor, info: "SamplingBatchInfo") -> None:
    expected = (info.batch_size, info.vocab_size)
    if logits.dim() != 2 or tuple(logits.shape) != expected:
        raise ValueError(
            f"logits have shape {tuple(logits.shape)} but the SamplingBatchInfo expects {expected} "
            f"(batch size, vocab size); build it from the same requests and the model's vocab size"
        )
