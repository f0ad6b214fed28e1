"""Structured generation inside the scheduler: grammar compilation, per-step masks, jump-forward.

- Requests with `regex` / `json_schema` / `ebnf` / `lark` wait in a small queue while their grammar
  compiles off the scheduler thread (GrammarManager caches by (kind, spec)); an invalid grammar
  finishes only that request with a 400-status abort naming the problem.
- Each step, the allowed-token mask of all constrained requests in the batch is built into one
  packed bitmask, unpacked on the device into the [bs, vocab] mask the sampler applies. Under
  overlap scheduling this happens while the batch's forward pass runs (see scheduler.py).
- A grammar still compiling after GRAMMAR_COMPILE_TIMEOUT_S fails its request with a 400 (size
  limits are checked before compiling; see constrained/grammar_limits.py).
- Jump-forward (compressed FSM): after a token is accepted, if the grammar admits exactly one
  continuation string, it is appended without decoding (when that saves more request-steps than
  the extra forward pass costs the running batch; see try_jump_forward). The affected tail is
  re-tokenized so the tokens are the tokenizer's own, the grammar is rolled back and re-accepts
  them, and the request leaves the running batch: its KV is cached and it re-prefills the new
  tokens from the radix cache. Only tokens not yet streamed to the client are ever re-tokenized.
  A jump is bounded: the grammar is asked for at most JUMP_CHUNK_CHARS characters, and never adds
  more tokens than the request may still produce (max_new_tokens, context length); a longer
  forced text is jumped a chunk per step.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Tuple

import torch

from sglang.runtime.constrained.grammar_limits import GRAMMAR_COMPILE_TIMEOUT_S, JUMP_CHUNK_CHARS
from sglang.runtime.managers.io_struct import finish_abort
from sglang.runtime.managers.req import Req

logger = logging.getLogger(__name__)

_JUMP_CONTEXT_TOKENS = 4
# Characters asked of the grammar per token the request may still add: enough for long tokens,
# while a request one token from its limit does not build a full chunk it cannot use.
_JUMP_CHARS_PER_TOKEN = 16
# Above this many running requests a jump would need a forced text of more tokens than that, which
# is rare, while asking every request's grammar for its forced text each step adds host time on the
# critical path of a grammar batch (its sampling waits for this host work); so it is not asked.
_JUMP_QUERY_MAX_BATCH = 16


class GrammarSupport:
    def __init__(self, server_args, tokenizer, vocab_size: int, eos_token_ids: set):
        self.backend = server_args.grammar_backend
        self.jump_forward = not server_args.disable_jump_forward
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = set(eos_token_ids)
        self.whitespace = server_args.constrained_json_whitespace_pattern
        self._manager = None
        self.pending: List[Req] = []
        self._submitted_at: Dict[int, float] = {}  # id(req) -> when its grammar was submitted
        self.stats = {"jump_forward_events": 0, "jump_forward_tokens": 0, "jump_forward_skipped": 0,
                      "aborted_grammars": 0}

    # ---------------------------------------------------------------- compilation
    def _get_manager(self):
        if self._manager is None:
            from sglang.runtime.constrained.grammar_manager import GrammarManager

            self._manager = GrammarManager(self.backend, self.tokenizer, self.vocab_size, self.eos_token_ids,
                                           whitespace_pattern=self.whitespace)
        return self._manager

    def attach(self, req: Req) -> bool:
        """Start compiling the request's grammar; True when the request must wait for it."""
        params = req.sampling_params
        if (params.regex is None and params.json_schema is None and params.ebnf is None
                and getattr(params, "lark", None) is None):
            return False
        from sglang.runtime.constrained.grammar_manager import grammar_kind_of

        spec = grammar_kind_of(params)
        if spec is None:
            return False
        if self.backend == "none" or self.tokenizer is None:
            req.finished_reason = finish_abort(
                "structured generation (regex/json_schema/ebnf/lark) is disabled on this server "
                "(--grammar-backend none or no tokenizer)")
            return False
        req.grammar = self._get_manager().submit(*spec)
        self.pending.append(req)
        self._submitted_at[id(req)] = time.monotonic()
        return True

    def poll(self) -> Tuple[List[Req], List[Req]]:
        """Requests whose grammar is ready (to the waiting queue) and those that failed (finished)."""
        ready, failed, still = [], [], []
        now = time.monotonic()
        for req in self.pending:
            future = req.grammar
            if req.to_abort is not None:
                req.finished_reason = finish_abort(req.to_abort)
                failed.append(req)
            elif not future.done() and now - self._submitted_at[id(req)] > GRAMMAR_COMPILE_TIMEOUT_S:
                # The compile thread cannot be stopped; its result is still cached when it ends.
                req.finished_reason = finish_abort(
                    f"invalid grammar: compiling it took longer than the limit of {GRAMMAR_COMPILE_TIMEOUT_S:g} s "
                    f"(GRAMMAR_COMPILE_TIMEOUT_S); simplify the grammar")
                self.stats["aborted_grammars"] += 1
                failed.append(req)
            elif not future.done():
                still.append(req)
            elif future.exception() is not None:
                req.finished_reason = finish_abort(f"invalid grammar: {future.exception()}")
                self.stats["aborted_grammars"] += 1
                failed.append(req)
            else:
                req.grammar = future.result()
                ready.append(req)
        self.pending = still
        for req in ready + failed:
            self._submitted_at.pop(id(req), None)
        return ready, failed

    def manager_stats(self) -> dict:
        base = dict(self.stats)
        if self._manager is not None:
            base.update({f"grammar_{k}": v for k, v in self._manager.stats().items()})
        return base

    # ---------------------------------------------------------------- sampling
    @staticmethod
    def build_mask(reqs: List[Req], vocab_size: int, device) -> Optional[torch.Tensor]:
        if all(r.grammar is None for r in reqs):
            return None
        from sglang.runtime.constrained import build_allowed_token_mask

        return build_allowed_token_mask([r.grammar for r in reqs], vocab_size, device)

    def accept(self, req: Req, token_id: int) -> None:
        if req.grammar is None:
            return
        if not req.grammar.accept_token(token_id):
            # The mask makes this impossible; if it happens, end the request rather than emit junk.
            logger.error("grammar rejected sampled token %d for request %s", token_id, req.rid)
            req.finished_reason = finish_abort("internal error: the grammar rejected a sampled token", 500,
                                               "InternalServerError")

    # ---------------------------------------------------------------- jump-forward
    def try_jump_forward(self, req: Req, batch_size: int = 1, max_tokens: Optional[int] = None) -> bool:
        """Apply a forced continuation when it pays for itself. Returns True when the request
        must re-prefill the new tokens.

        At most `max_tokens` tokens are added (what the request may still produce: the rest of
        max_new_tokens and of the context); None means the rest of max_new_tokens.

        The re-prefill is an extra forward pass in which the other `batch_size - 1` running
        requests make no progress, while the jump saves this request one decode step per forced
        token but the first: it is taken only when the forced tokens number at least
        `batch_size` (always when the request runs alone; rarely in a full batch, where the
        forced tokens are decoded one per step instead, each under a one-token mask)."""
        if (not self.jump_forward or req.grammar is None or req.finished_reason is not None
                or batch_size > _JUMP_QUERY_MAX_BATCH):
            return False
        if max_tokens is None:
            max_tokens = req.sampling_params.max_new_tokens - len(req.output_ids)
        if max_tokens <= 0:
            return False
        jump = req.grammar.try_jump_forward(min(JUMP_CHUNK_CHARS, max_tokens * _JUMP_CHARS_PER_TOKEN))
        if not jump:
            return False
        if len(jump) < batch_size:  # a token covers at least one character: too few tokens
            self.stats["jump_forward_skipped"] += 1
            return False
        new_tail, replaced = self._retokenize(req, jump, max_tokens)
        if not new_tail:
            return False  # no tokenization reproduces the text exactly: decode normally instead
        if len(new_tail) - replaced < batch_size:
            self.stats["jump_forward_skipped"] += 1
            return False
        if replaced:
            req.grammar.rollback(replaced)
            del req.output_ids[len(req.output_ids) - replaced:]
        for token in new_tail:
            if not req.grammar.accept_token(token):
                raise RuntimeError(f"grammar rejected its own jump-forward token {token}")
            req.output_ids.append(token)
        added = len(new_tail) - replaced
        req.extra_meta["jump_forward_tokens"] = req.extra_meta.get("jump_forward_tokens", 0) + added
        if req.return_logprob:
            req.extra_meta["jump_forward_logprobs"] = "tokens added by jump-forward have no logprobs"
        self.stats["jump_forward_events"] += 1
        self.stats["jump_forward_tokens"] += added
        req.jump_replaced = replaced
        return True

    def _retokenize(self, req: Req, jump: str, max_tokens: int) -> Tuple[List[int], int]:
        """(new tail, tokens it replaces), adding at most `max_tokens` tokens.

        Re-tokenizes only tokens the client has not seen and whose KV the request owns (or has
        not computed yet: the newest token's KV is written by the next batch, maybe in flight).
        When the jump would overrun the budget, the forced text's own tokens are cut instead
        (the request then ends by length, so the boundary tokens need not be canonical)."""
        from sglang.runtime.constrained.jump_forward import jump_forward_retokenize

        unsent = len(req.output_ids) - req.sent_offset
        owned_outputs = req.seqlen - max(len(req.prefix_indices), len(req.origin_input_ids))
        context = max(min(_JUMP_CONTEXT_TOKENS, unsent, owned_outputs, len(req.output_ids)), 0)
        new_tail, replaced = jump_forward_retokenize(self.tokenizer, req.output_ids, jump, context_tokens=context)
        if len(new_tail) - replaced > max_tokens:
            new_tail, replaced = jump_forward_retokenize(self.tokenizer, req.output_ids, jump, context_tokens=0)
            new_tail = new_tail[:max_tokens]
        return new_tail, replaced
