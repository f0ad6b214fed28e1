"""Typed messages exchanged between the tokenizer manager, the scheduler and the detokenizer.

They travel pickled over ZMQ ipc sockets, so they are plain dataclasses of Python values.
Flow: TokenizerManager --TokenizedGenerateReq/AbortReq/...--> Scheduler
      Scheduler --BatchTokenOut--> Detokenizer --BatchStrOut--> TokenizerManager
      Scheduler --control replies (FlushCacheReply, ServerStateReply, ConcatAppendReply)--> Detokenizer
      (forwarded)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sglang.runtime.multimodal.inputs import MultimodalInputs
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
    # Images/videos (processor outputs; large tensors travel through shared memory).
    mm_inputs: Optional[MultimodalInputs] = None
    lora_path: Optional[str] = None  # the LoRA adapter's name (upstream's field name); None: base model


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


@dataclass
class ConcatAppendReq:
    """Build `parent + suffix_1 + ... + suffix_N` in the radix cache from the children's cached KV."""

    parent_ids: List[int]
    children_ids: List[List[int]]  # each child's full ids (parent ids, then its continuation)


@dataclass
class LoadLoraReq:
    """Load a PEFT adapter under `lora_name` (runtime/lora/)."""

    lora_name: str
    lora_path: str


@dataclass
class UnloadLoraReq:
    lora_name: str


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


@dataclass
class ConcatAppendReply:
    success: bool
    message: str = ""
    input_ids: List[int] = field(default_factory=list)  # the concatenated ids now in the cache
    copied_tokens: int = 0  # KV entries copied into fresh slots
    cached_prefix_tokens: int = 0  # leading tokens the cache already held (not copied)
    complete: bool = True  # False: stopped early at the first token whose source KV is not cached
    requested_tokens: int = 0  # length of the full concatenation that was asked for

    def to_dict(self) -> Dict[str, Any]:
        return {"input_ids": self.input_ids, "num_tokens": len(self.input_ids), "copied_tokens": self.copied_tokens,
                "cached_prefix_tokens": self.cached_prefix_tokens, "complete": self.complete,
                "requested_tokens": self.requested_tokens, "message": self.message}


@dataclass
class LoraReply:
    success: bool
    message: str = ""
    loaded: List[str] = field(default_factory=list)  # adapter names loaded after the call


# Replies to control messages: the tokenizer manager matches them to its one pending control call.
CONTROL_REPLIES = (FlushCacheReply, ServerStateReply, ConcatAppendReply, LoraReply)
