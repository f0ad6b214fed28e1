"""Typed messages exchanged between the tokenizer manager, the scheduler and the detokenizer.

They travel pickled over ZMQ ipc sockets, so they are plain dataclasses of Python values.
Flow: TokenizerManager --TokenizedGenerateReq/AbortReq/...--> Scheduler
      Scheduler --BatchTokenOut--> Detokenizer --BatchStrOut--> TokenizerManager
      Scheduler --control replies (FlushCacheReply, ServerStateReply)--> Detokenizer (forwarded)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sglang.runtime.sampling.sampling_params import SamplingParams

# ---------------------------------------------------------------- finish reasons (upstream shape)


def finish_matched_token(token_id: int) -> dict:
    return {"type": "stop", "matched": token_id}


def finish_matched_str(text: str) -> dict:
    return {"type": "stop", "matched": text}


def finish_length(length: int) -> dict:
    return {"type": "length", "length": length}


def finish_abort(message: str, status_code: int = 400, err_type: str = "BadRequestError") -> dict:
    return {"type": "abort", "message": message, "status_code": status_code, "err_type": err_type}


# ---------------------------------------------------------------- tokenizer manager -> scheduler


@dataclass
class TokenizedGenerateReq:
    rid: str
    input_text: Optional[str]
    input_ids: List[int]
    sampling_params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1  # -1: only output logprobs
    top_logprobs_num: int = 0
    token_ids_logprob: Optional[List[int]] = None
    stream: bool = False
    created_time: float = 0.0


@dataclass
class AbortReq:
    rid: str  # "" aborts everything
    message: str = "aborted by request"


@dataclass
class FlushCacheReq:
    pass


@dataclass
class ServerStateReq:
    """Asks the scheduler for its memory/cache/queue figures."""

    pass


# ---------------------------------------------------------------- scheduler -> detokenizer


@dataclass
class LogprobDelta:
    """Logprob entries produced since the last message for one request (values and token ids)."""

    input_token_logprobs: Optional[List[Optional[float]]] = None  # sent once, with the first message
    input_token_ids: Optional[List[int]] = None
    input_top_logprobs: Optional[List[Optional[List[tuple]]]] = None  # per position: [(logprob, id), ...]
    input_token_ids_logprobs: Optional[List[Optional[List[tuple]]]] = None
    output_token_logprobs: List[float] = field(default_factory=list)
    output_token_ids: List[int] = field(default_factory=list)
    output_top_logprobs: List[List[tuple]] = field(default_factory=list)
    output_token_ids_logprobs: List[List[tuple]] = field(default_factory=list)


@dataclass
class TokenOut:
    """One request's progress: new output ids since its previous TokenOut."""

    rid: str
    new_ids: List[int]
    finished_reason: Optional[dict]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    # detokenization options (sent every time; cheap and keeps the detokenizer stateless-on-entry)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    stop_strs: Optional[List[str]] = None
    logprobs: Optional[LogprobDelta] = None
    extra_meta: Dict[str, Any] = field(default_factory=dict)  # e.g. jump_forward_tokens, spec stats


@dataclass
class BatchTokenOut:
    outputs: List[TokenOut]


# ---------------------------------------------------------------- detokenizer -> tokenizer manager


@dataclass
class StrOut:
    rid: str
    text_delta: str  # new stable text since the previous StrOut of this request
    new_ids: List[int]
    finished_reason: Optional[dict]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    logprobs: Optional[LogprobDelta] = None
    extra_meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchStrOut:
    outputs: List[StrOut]


@dataclass
class FlushCacheReply:
    success: bool
    message: str = ""


@dataclass
class ServerStateReply:
    state: Dict[str, Any]
