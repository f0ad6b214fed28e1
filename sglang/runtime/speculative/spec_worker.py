"""The speculative step the scheduler calls instead of a decode step.

One step: draft for every running request (NGRAM lookup, capped by what the request may still
produce, the context, free KV and its grammar), run ONE forward pass over [newest token + drafts]
per request, accept drafts (rejection_sampler.py), append the emitted tokens through the
scheduler's normal per-token path (grammar advance, EOS / stop strings / max_new_tokens checks,
so a request can finish in the middle of its accepted drafts), and free the KV of rejected drafts.

The step needs every request's newest token on the host (to draft from it), so the scheduler
processes the batch in flight first: speculative steps are not overlapped. When no request found
a draft the step falls back to a plain (overlapped) decode, and batches larger than
--speculative-disable-batch-size never speculate.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from sglang.runtime.host_device import to_device
from sglang.runtime.managers.io_struct import finish_abort
from sglang.runtime.managers.req import Req
from sglang.runtime.sampling.logprobs import LogprobResult, compute_logprobs
from sglang.runtime.sampling.penalties import apply_logits_processors
from sglang.runtime.speculative.ngram_drafter import NgramDrafter
from sglang.runtime.speculative.rejection_sampler import VerifyOutcome, verify
from sglang.runtime.speculative.verify_batch import build_verify_batch, settle_kv
from sglang.runtime.speculative.verify_inputs import build_row_info, cut_at_stop, grammar_cut_and_masks

logger = logging.getLogger(__name__)

_MAX_COOLDOWN = 8
META_KEYS = ("spec_verify_ct", "spec_accept_token_num", "spec_draft_token_num")


class NgramSpecWorker:
    def __init__(self, server_args, vocab_size: int, context_len: int, target_runner=None):
        self.drafter = NgramDrafter(server_args.speculative_ngram_min_match_window_size,
                                    server_args.speculative_ngram_max_match_window_size)
        self.max_draft = server_args.speculative_num_draft_tokens - 1
        self.disable_batch_size = server_args.speculative_disable_batch_size
        self.vocab_size = vocab_size
        self.context_len = context_len
        if not server_args.disable_overlap_schedule:
            logger.info("speculative decoding: steps that speculate (running batch <= %d) are not overlapped: "
                        "drafting needs each request's newest token; larger batches decode overlapped",
                        self.disable_batch_size)
        # Backoff after steps that found no draft: the next `cooldown` decode steps do not try
        # (trying costs the overlap of that step); it doubles per miss up to _MAX_COOLDOWN.
        self.misses = 0
        self.cooldown = 0
        # Per (request, verify pass): tokens emitted (accepted drafts + 1) -> count.
        self.accept_lengths: Dict[int, int] = {}
        self.stats = {"spec_verify_passes": 0, "spec_draft_tokens": 0, "spec_accepted_tokens": 0,
                      "spec_emitted_tokens": 0}

    def on_admit(self, req: Req) -> None:
        for key in META_KEYS:
            req.extra_meta.setdefault(key, 0)

    def wants(self, batch_size: int) -> bool:
        if not (self.max_draft > 0 and 0 < batch_size <= self.disable_batch_size):
            return False
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        return True

    def state(self) -> dict:
        return {**self.stats, "spec_accept_length_counts": dict(self.accept_lengths)}

    # ---------------------------------------------------------------- drafting
    def plan(self, reqs: Sequence[Req], res) -> Optional[Tuple[List[List[int]], list]]:
        """(drafts, grammar masks) per request, or None when no request has a draft (or one
        cannot take part: multimodal positions, a token still in flight)."""
        if any(r.mm_inputs is not None or r.pending_ref is not None or r.kv_committed_len != r.seqlen - 1
               for r in reqs):
            return None
        budget = res.allocator.available_size() + res.tree_cache.evictable_size() - len(reqs)
        rooms = []
        for req in reqs:
            room = max(min(self.max_draft, budget, self.context_len - req.seqlen - 1,
                           req.sampling_params.max_new_tokens - len(req.output_ids) - 1), 0)
            budget -= room
            rooms.append(room)
        drafts, masks = [], []
        for req, draft in zip(reqs, self.propose(reqs, rooms)):
            draft, mask = grammar_cut_and_masks(req, cut_at_stop(req, draft), self.vocab_size)
            drafts.append(draft)
            masks.append(mask)
        if not any(drafts):
            return None
        return drafts, masks

    def propose(self, reqs: Sequence[Req], rooms: List[int]) -> List[List[int]]:
        """Up to rooms[i] draft tokens for each request (before stop / grammar cuts)."""
        return [self.drafter.propose(r.all_ids, n) if n > 0 else [] for r, n in zip(reqs, rooms)]

    def on_finish(self, req: Req) -> None:
        """A request left the running batch for good (the DRAFT worker frees its draft KV)."""

    # ---------------------------------------------------------------- the step
    def run(self, sched, reqs: List[Req]) -> bool:
        """Speculate for `reqs` (the running batch, nothing in flight). False: nothing drafted,
        the caller runs a plain decode step instead."""
        planned = self.plan(reqs, sched.res)
        if planned is None:
            self.cooldown = min(1 << self.misses, _MAX_COOLDOWN)
            self.misses = min(self.misses + 1, _MAX_COOLDOWN.bit_length())
            return False
        self.misses = 0
        drafts, masks = planned
        fb = build_verify_batch(reqs, drafts, sched.res)
        raw = sched._forward(fb).next_token_logits
        info = build_row_info(reqs, drafts, masks, self.vocab_size, raw.device)
        logits = apply_logits_processors(raw.clone(), info) if info.needs_logits_processing else raw
        outcome = verify(logits, drafts, info)
        self._apply(sched, reqs, drafts, outcome, raw)
        return True

    def _apply(self, sched, reqs: List[Req], drafts: List[List[int]], outcome: VerifyOutcome,
               raw: torch.Tensor) -> None:
        row = 0
        self.stats["spec_verify_passes"] += 1
        for req, draft, tokens, accepted in zip(reqs, drafts, outcome.emitted, outcome.accepted):
            appended = self._emit(sched, req, tokens, raw[row : row + len(tokens)])
            row += len(draft) + 1
            kept_drafts = min(appended, accepted)
            settle_kv(req, len(draft) + 1, 1 + kept_drafts, sched.res)
            self._count(req, len(draft), kept_drafts, appended)
            self._after(sched, req)
        sched._drop_finished()

    def _emit(self, sched, req: Req, tokens: List[int], rows: torch.Tensor) -> int:
        """Append `tokens` (their verify logit rows: `rows`) through the scheduler's per-token
        path until the request finishes; returns how many were appended."""
        logprobs = self._logprobs(req, rows, tokens) if req.return_logprob else None
        appended = 0
        for j, tok in enumerate(tokens):
            if logprobs is not None:
                sched.output.record_output_logprob(req, logprobs, j, tok)
            sched._append(req, tok)
            appended += 1
            if req.finished_reason is not None:
                break
        return appended

    @staticmethod
    def _after(sched, req: Req) -> None:
        if req.to_abort is not None and req.finished_reason is None:
            req.finished_reason = finish_abort(req.to_abort)
        sched._after_token(req)

    @staticmethod
    def _logprobs(req: Req, rows: torch.Tensor, tokens: List[int]) -> LogprobResult:
        n = len(tokens)
        return compute_logprobs(rows, to_device(tokens, torch.int64, rows.device), [req.top_logprobs_num] * n,
                                [req.token_ids_logprob] * n)

    def _count(self, req: Req, drafted: int, accepted: int, emitted: int) -> None:
        meta = req.extra_meta
        meta["spec_verify_ct"] = meta.get("spec_verify_ct", 0) + 1
        meta["spec_accept_token_num"] = meta.get("spec_accept_token_num", 0) + accepted
        meta["spec_draft_token_num"] = meta.get("spec_draft_token_num", 0) + drafted
        self.stats["spec_draft_tokens"] += drafted
        self.stats["spec_accepted_tokens"] += accepted
        self.stats["spec_emitted_tokens"] += emitted
        self.accept_lengths[emitted] = self.accept_lengths.get(emitted, 0) + 1
