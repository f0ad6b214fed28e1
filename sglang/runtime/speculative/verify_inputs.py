"""What the verify rows need besides the logits: per-row sampling state and grammar masks.

Row j of a request's verify segment is sampled as if the request's output already ended with
its first j drafts: penalties count them, min_new_tokens sees them, the seeded draw uses their
output position, and a grammar mask is the grammar's state after accepting them. Drafts the
grammar rejects (or that follow a stop token) are cut before the verify pass is built, so they
cost no KV and no compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.sampling.sampling_params import SamplingParams


@dataclass
class RowView:
    """A request as seen by verify row j (satisfies SamplingBatchInfo's SamplingReq)."""

    sampling_params: SamplingParams
    origin_input_ids: List[int]
    output_ids: List[int]
    seed: int
    eos_token_ids: Set[int]


def cut_at_stop(req: Req, draft: List[int]) -> List[int]:
    """Nothing after a token that would end the request is worth verifying."""
    for j, tok in enumerate(draft):
        if tok in req.eos_token_ids:
            return draft[: j + 1]
    return draft


def grammar_cut_and_masks(req: Req, draft: List[int], vocab_size: int) -> Tuple[List[int], Optional[torch.Tensor]]:
    """(draft cut at the first token the grammar rejects, [len + 1, V] bool masks of the grammar
    states along it); (draft, None) when unconstrained. The grammar is left as it was."""
    grammar = req.grammar
    if grammar is None:
        return draft, None
    masks = torch.zeros((len(draft) + 1, vocab_size), dtype=torch.bool)
    taken = 0
    grammar.fill_allowed_mask(masks[0])
    for tok in draft:
        if not grammar.accept_token(tok):
            break
        taken += 1
        grammar.fill_allowed_mask(masks[taken])
    if taken:
        grammar.rollback(taken)
    return draft[:taken], masks[: taken + 1]


def row_views(reqs: Sequence[Req], drafts: Sequence[List[int]]) -> List[RowView]:
    views = []
    for req, draft in zip(reqs, drafts):
        for j in range(len(draft) + 1):
            views.append(RowView(req.sampling_params, req.origin_input_ids, req.output_ids + draft[:j],
                                 req.seed, req.eos_token_ids))
    return views


def build_row_info(reqs: Sequence[Req], drafts: Sequence[List[int]], masks: Sequence[Optional[torch.Tensor]],
                   vocab_size: int, device) -> SamplingBatchInfo:
    info = SamplingBatchInfo.from_reqs(row_views(reqs, drafts), vocab_size, device)
    if any(m is not None for m in masks):
        full = [m if m is not None else torch.ones((len(d) + 1, vocab_size), dtype=torch.bool)
                for m, d in zip(masks, drafts)]
        info.allowed_token_mask = torch.cat(full).to(device)
    return info
