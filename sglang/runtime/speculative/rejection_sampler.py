"""Accepting drafted tokens against the target model's verify logits.

Rows: request i owns k_i + 1 consecutive rows of the verify logits. Row j < k_i scores the
position where draft d_j was guessed; the last row follows the last draft (the bonus token).

- Greedy rows (temperature 0 / top_k 1): accept d_j while it equals the argmax of the processed
  logits; the first mismatch emits that argmax instead. The emitted tokens are exactly those
  plain greedy decoding would produce, one per step.
- Sampled rows: the draft distribution q of an n-gram guess is one-hot at d_j, so standard
  speculative rejection sampling reduces to: accept d_j with probability p(d_j); otherwise emit
  a token drawn from p with d_j removed and renormalised (= norm(max(p - q, 0))). Every emitted
  token is then distributed exactly as p, the distribution plain sampling draws from (after
  penalties, bias, masks, temperature, top-k/top-p/min-p: the same filters as the sampler).

Randomness reuses the sampler's counter-based hash of (seed, output position, token id), so a
request's draws depend only on its own seed and positions. The acceptance coin is keyed by a
token id no vocabulary has (_COIN_ID), independent of the race that draws the replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch

from sglang.runtime.host_device import to_device
from sglang.runtime.sampling.sampler import exponential_race, sorted_keep_mask, uniform_noise
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo

_COIN_ID = 0x7FFFFFFF  # above any vocabulary: keys the acceptance coin's uniform draw


@dataclass
class VerifyOutcome:
    emitted: List[List[int]]  # per request: accepted drafts, then one correction / bonus token
    accepted: List[int]  # per request: how many drafts were accepted


def target_probs(logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """[rows, V] the distribution plain sampling draws from: softmax at the row's temperature,
    cut by top-k / top-p / min-p exactly as the sampler's filters, renormalised."""
    probs = torch.softmax(logits / info.temperatures[:, None], dim=-1)
    if info.need_top_p or info.need_top_k or info.need_min_p:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        kept = sorted_probs * sorted_keep_mask(sorted_probs, info)
        probs = torch.zeros_like(probs).scatter_(1, sorted_ids, kept)
    return probs / probs.sum(dim=-1, keepdim=True)


def row_drafts(drafts: Sequence[Sequence[int]]) -> List[int]:
    """Per verify row, the draft token it checks (-1 on each request's bonus row)."""
    out: List[int] = []
    for d in drafts:
        out.extend(d)
        out.append(-1)
    return out


def verify(logits: torch.Tensor, drafts: Sequence[Sequence[int]], info: SamplingBatchInfo) -> VerifyOutcome:
    """Accept drafts row by row. `logits` [sum(k_i + 1), V] are float32 verify logits after the
    logits processors (penalties, bias, grammar masks); `info` describes the same rows."""
    draft_col = to_device(row_drafts(drafts), torch.int64, logits.device)
    greedy_ids = logits.argmax(dim=-1)
    if info.is_all_greedy:
        accept, choice = draft_col == greedy_ids, greedy_ids
    else:
        accept, choice = _sampled_rows(logits, draft_col, info)
        accept = torch.where(info.greedy_mask, draft_col == greedy_ids, accept)
        choice = torch.where(info.greedy_mask, greedy_ids, choice)
    return _walk(drafts, accept.tolist(), choice.tolist())


def _sampled_rows(logits: torch.Tensor, draft_col: torch.Tensor, info: SamplingBatchInfo):
    """(accepted?, replacement token) per row by rejection sampling against a one-hot draft."""
    probs = target_probs(logits, info)
    has_draft = draft_col >= 0
    d = draft_col.clamp(min=0)[:, None]
    p_draft = probs.gather(1, d).squeeze(1)
    coin_id = torch.full((1, 1), _COIN_ID, dtype=torch.int64, device=logits.device)
    coin = uniform_noise(info.seeds, info.steps, coin_id).squeeze(1)
    accept = has_draft & (coin < p_draft)
    # Residual: p without the draft token (bonus rows keep p whole); the race normalises it.
    residual = probs.scatter(1, d, torch.where(has_draft, torch.zeros_like(p_draft), p_draft)[:, None])
    token_ids = torch.arange(probs.shape[1], device=probs.device)[None, :]
    return accept, exponential_race(residual, token_ids, info)


def _walk(drafts: Sequence[Sequence[int]], accept: List[bool], choice: List[int]) -> VerifyOutcome:
    emitted: List[List[int]] = []
    accepted: List[int] = []
    row = 0
    for d in drafts:
        out: List[int] = []
        j = 0
        while j < len(d) and accept[row + j]:
            out.append(d[j])
            j += 1
        out.append(choice[row + j])  # the correction at the first rejection, else the bonus
        emitted.append(out)
        accepted.append(j)
        row += len(d) + 1
    return VerifyOutcome(emitted, accepted)
