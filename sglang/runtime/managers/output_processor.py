"""After a forward pass: record sampled tokens, logprobs and finish reasons; build TokenOuts.

Finish checks run in this order after each new token: stop/EOS token ids, max_new_tokens,
context length, stop strings (decoded from the tail of the output, so a stop string split across
tokens is still found), stop_regex patterns (time-bounded: sampling/stop_regex.py). The
detokenizer trims the matched text later.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from sglang.runtime.managers.io_struct import (
    LogprobDelta,
    TokenOut,
    finish_abort,
    finish_length,
    finish_matched_str,
    finish_matched_token,
)
from sglang.runtime.managers.req import Req
from sglang.runtime.host_device import HostCopies, to_device
from sglang.runtime.sampling.logprobs import LogprobResult, LogprobTensors, compute_logprob_tensors, compute_logprobs
from sglang.runtime.sampling.stop_regex import StopRegexTimeout, find_new_match

_STOP_REGEX_WINDOW = 64  # output tokens searched for a stop_regex match


class OutputProcessor:
    def __init__(self, tokenizer, context_len: int, stream_interval: int):
        self.tokenizer = tokenizer
        self.context_len = context_len
        self.stream_interval = stream_interval

    # ---------------------------------------------------------------- finishing
    def check_finished(self, req: Req) -> None:
        if req.finished_reason is not None:
            return
        params = req.sampling_params
        last = req.output_ids[-1] if req.output_ids else None
        if last is not None and last in req.eos_token_ids and len(req.output_ids) > params.min_new_tokens - 1:
            req.finished_reason = finish_matched_token(last)
        elif len(req.output_ids) >= params.max_new_tokens:
            req.finished_reason = finish_length(params.max_new_tokens)
        elif req.seqlen >= self.context_len:
            req.finished_reason = finish_length(len(req.output_ids))
        elif (params.stop or params.stop_regex) and self.tokenizer is not None and \
                len(req.output_ids) >= max(params.min_new_tokens, 1):
            matched = self._match_stop_str(req) if params.stop else None
            try:
                if matched is None and params.stop_regex:
                    matched = self._match_stop_regex(req)
            except StopRegexTimeout as exc:  # ends this request; the others go on
                req.finished_reason = finish_abort(str(exc))
                return
            if matched is not None:
                req.finished_reason = finish_matched_str(matched)

    def _match_stop_str(self, req: Req) -> Optional[str]:
        params = req.sampling_params
        # Enough tail tokens to contain the longest stop string plus the token that completed it.
        window = params.stop_str_max_tokens or max(len(s) for s in params.stop)
        tail_ids = req.output_ids[-(window + 2):]
        tail = self.tokenizer.decode(tail_ids, skip_special_tokens=params.skip_special_tokens)
        # A stop string must be found in the newest text; earlier steps checked the rest.
        for stop in params.stop:
            if stop and stop in tail:
                return stop
        return None

    def _match_stop_regex(self, req: Req) -> Optional[str]:
        """The text matched by a `stop_regex` pattern in the newest output (the detokenizer then
        trims it like a stop string). Matches are searched in a tail window of the output."""
        params = req.sampling_params
        tail = self.tokenizer.decode(req.output_ids[-_STOP_REGEX_WINDOW:], skip_special_tokens=params.skip_special_tokens)
        patterns = [params.stop_regex] if isinstance(params.stop_regex, str) else params.stop_regex
        newest = len(self.tokenizer.decode(req.output_ids[-1:], skip_special_tokens=params.skip_special_tokens))
        return find_new_match(patterns, tail, newest)

    # ---------------------------------------------------------------- logprobs
    @staticmethod
    def launch_output_logprobs(reqs: List[Req], logits: torch.Tensor, next_ids: torch.Tensor,
                               copies: HostCopies) -> Optional[Tuple[List[int], LogprobTensors]]:
        """Queue the output logprobs of the rows that asked for them; the tensors come back on the
        host through `copies` (read them after its event). Returns (rows, host tensors)."""
        rows = [i for i, r in enumerate(reqs) if r.return_logprob]
        if not rows:
            return None
        if len(rows) != len(reqs):
            sel = to_device(rows, torch.int64, logits.device)
            logits, next_ids = logits[sel], next_ids[sel]
        tensors = compute_logprob_tensors(logits, next_ids, [reqs[i].top_logprobs_num for i in rows],
                                          [reqs[i].token_ids_logprob for i in rows])
        return rows, tensors.map(copies.add)

    @staticmethod
    def record_output_logprob(req: Req, result: LogprobResult, j: int, token: int) -> None:
        """Row j of a batch's output-logprob result belongs to `req`, which sampled `token`."""
        state = req.logprobs
        state.output_vals.append(result.token_logprobs[j])
        state.output_ids.append(token)
        state.output_top.append(result.top_logprobs[j])
        state.output_token_ids.append(result.token_ids_logprobs[j])

    def record_input_logprobs(self, req: Req, logits: torch.Tensor, seg_start: int, prefix_len: int) -> None:
        """`logits` are this request's rows for global positions prefix_len + seg_start ...; each
        scores the next input token. Called once per (chunked) prefill segment."""
        state = req.logprobs
        n_input = len(req.origin_input_ids)
        first_pos = prefix_len + seg_start
        if req.logprob_start_len == 0 and first_pos == 0 and not state.input_vals:
            state.input_vals.append(None)  # the first token has no context to be scored in
            state.input_ids.append(req.origin_input_ids[0])
            state.input_top.append(None)
            state.input_token_ids.append(None)
        # Rows whose target (position + 1) is an input token at or after logprob_start_len.
        lo = max(req.logprob_start_len - 1 - first_pos, 0)
        hi = min(logits.shape[0], n_input - 1 - first_pos)
        if hi > lo:
            targets = req.origin_input_ids[first_pos + lo + 1 : first_pos + hi + 1]
            result = compute_logprobs(
                logits[lo:hi],
                to_device(targets, torch.int64, logits.device),
                [req.top_logprobs_num] * (hi - lo),
                [req.token_ids_logprob] * (hi - lo),
            )
            state.input_vals.extend(result.token_logprobs)
            state.input_ids.extend(targets)
            state.input_top.extend(result.top_logprobs)
            state.input_token_ids.extend(result.token_ids_logprobs)
        if prefix_len + seg_start + logits.shape[0] >= n_input:
            state.input_done = True

    # ---------------------------------------------------------------- outputs
    def should_send(self, req: Req) -> bool:
        if req.finished_reason is not None:
            return True
        new = len(req.output_ids) - req.sent_offset
        if new > 0 and req.sent_offset == 0:
            # The first token goes out for every request, streamed or not: the tokenizer manager
            # times the first token and the inter-token gaps from it (metrics).
            return True
        return req.stream and new >= self.stream_interval

    def make_token_out(self, req: Req) -> TokenOut:
        params = req.sampling_params
        new_ids = req.output_ids[req.sent_offset:]
        delta = self._logprob_delta(req) if req.return_logprob else None
        out = TokenOut(
            rid=req.rid,
            new_ids=new_ids,
            finished_reason=req.finished_reason,
            prompt_tokens=len(req.origin_input_ids),
            completion_tokens=len(req.output_ids),
            cached_tokens=req.cached_tokens,
            skip_special_tokens=params.skip_special_tokens,
            spaces_between_special_tokens=params.spaces_between_special_tokens,
            no_stop_trim=params.no_stop_trim,
            stop_strs=params.stop or None,
            logprobs=delta,
            extra_meta=dict(req.extra_meta),
        )
        req.sent_offset = len(req.output_ids)
        return out

    @staticmethod
    def _logprob_delta(req: Req) -> LogprobDelta:
        state = req.logprobs
        delta = LogprobDelta(
            output_token_logprobs=state.output_vals,
            output_token_ids=state.output_ids,
            output_top_logprobs=state.output_top,
            output_token_ids_logprobs=state.output_token_ids,
        )
        if not state.input_sent and (state.input_done or req.finished_reason is not None or req.logprob_start_len < 0):
            delta.input_token_logprobs = state.input_vals
            delta.input_token_ids = state.input_ids
            delta.input_top_logprobs = state.input_top
            delta.input_token_ids_logprobs = state.input_token_ids
            state.input_sent = True
        state.output_vals, state.output_ids, state.output_top, state.output_token_ids = [], [], [], []
        return delta
