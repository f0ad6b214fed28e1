"""Per-request accumulation in the tokenizer manager: text, ids, logprobs and timing."""

from __future__ import annotations

import asyncio
import time
from typing import List, Optional

from sglang.runtime.managers.io_struct import StrOut, TokenizedGenerateReq


class ReqState:
    def __init__(self, req: TokenizedGenerateReq, tokenizer=None):
        self.req = req
        self.tokenizer = tokenizer  # set only when logprob entries carry token text
        self.event = asyncio.Event()
        self.text = ""
        self.output_ids: List[int] = []
        self.finished = False
        self.finished_reason: Optional[dict] = None
        self.error: Optional[str] = None
        self.prompt_tokens = len(req.input_ids)
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.created = time.perf_counter()
        self.first_token_time: Optional[float] = None
        self.last_token_time: Optional[float] = None
        self.token_times: List[float] = []  # one inter-token gap per token after the first (metrics)
        self.extra_meta: dict = {}
        self.logprobs: Optional[dict] = {} if req.return_logprob else None

    def fail(self, message: str) -> None:
        self.error = message
        self.event.set()

    def update(self, out: StrOut) -> None:
        if out.new_ids:
            self._time_tokens(len(out.new_ids), time.perf_counter())
        self.text += out.text_delta
        self.output_ids.extend(out.new_ids)
        self.prompt_tokens = out.prompt_tokens
        self.completion_tokens = out.completion_tokens
        self.cached_tokens = out.cached_tokens
        self.extra_meta.update(out.extra_meta)
        if out.logprobs is not None and self.logprobs is not None:
            self._add_logprobs(out.logprobs)
        if out.finished_reason is not None:
            self.finished = True
            self.finished_reason = out.finished_reason

    def _time_tokens(self, count: int, now: float) -> None:
        """Record an inter-token gap for each of `count` tokens that arrived together: an equal
        share of the time since the previous token, or 0 for tokens that came with the first one.
        A request of N tokens gets N - 1 gaps, summing to the time from its first token to its last,
        whether it streams or not (non-streamed requests get their first token sent on its own)."""
        if self.first_token_time is None:
            self.first_token_time = now
            self.token_times.extend([0.0] * (count - 1))
        else:
            self.token_times.extend([(now - self.last_token_time) / count] * count)
        self.last_token_time = now

    # ---------------------------------------------------------------- logprobs
    def _token_text(self, token_id: int) -> Optional[str]:
        return self.tokenizer.decode([token_id]) if self.tokenizer is not None else None

    def _entry(self, logprob, token_id):
        return [logprob, token_id, self._token_text(token_id)]

    def _tops(self, tops):
        if tops is None:
            return None
        return [self._entry(lp, tid) for lp, tid in tops]

    def _add_logprobs(self, delta) -> None:
        lp = self.logprobs
        if delta.input_token_logprobs is not None:
            lp["input_token_logprobs"] = [self._entry(v, t) for v, t in zip(delta.input_token_logprobs, delta.input_token_ids)]
            if self.req.top_logprobs_num > 0:
                lp["input_top_logprobs"] = [self._tops(t) for t in delta.input_top_logprobs]
            if self.req.token_ids_logprob is not None:
                lp["input_token_ids_logprobs"] = [self._tops(t) for t in delta.input_token_ids_logprobs]
        out = lp.setdefault("output_token_logprobs", [])
        out.extend(self._entry(v, t) for v, t in zip(delta.output_token_logprobs, delta.output_token_ids))
        if self.req.top_logprobs_num > 0:
            lp.setdefault("output_top_logprobs", []).extend(self._tops(t) for t in delta.output_top_logprobs)
        if self.req.token_ids_logprob is not None:
            lp.setdefault("output_token_ids_logprobs", []).extend(
                self._tops(t) for t in delta.output_token_ids_logprobs)

    # ---------------------------------------------------------------- result
    def to_dict(self) -> dict:
        meta = {
            "id": self.req.rid,
            "finish_reason": _public_reason(self.finished_reason),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "e2e_latency": time.perf_counter() - self.created,
        }
        meta.update(self.extra_meta)
        if self.logprobs is not None:
            meta.setdefault("input_token_logprobs", [])
            meta.update({k: list(v) if isinstance(v, list) else v for k, v in self.logprobs.items()})
            meta.setdefault("input_token_logprobs", [])
            meta.setdefault("output_token_logprobs", [])
        return {"text": self.text, "output_ids": list(self.output_ids), "meta_info": meta}


def _public_reason(reason: Optional[dict]) -> Optional[dict]:
    """Finish reasons as upstream shows them; the HTTP status of an abort is kept for the server."""
    if reason is None:
        return None
    return dict(reason)
