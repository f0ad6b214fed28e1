"""The scheduler's view of one request: its tokens, its KV ownership, its progress.

Token bookkeeping (all lengths count tokens of `origin_input_ids + output_ids`):
- `kv_committed_len`: leading tokens whose KV is written in req_to_token[req_pool_idx, :len].
  The first len(prefix_indices) of them are owned by the radix tree, the rest by this request.
- `fill_ids`: what the next prefill must cover (input + output so far, possibly cut to a chunk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Set, Tuple

import torch

from sglang.runtime.multimodal.bidirectional import chunk_end, prefix_floor
from sglang.runtime.multimodal.inputs import MultimodalInputs
from sglang.runtime.sampling.sampling_params import SamplingParams

_EMPTY = torch.empty((0,), dtype=torch.int64)


@dataclass
class LogprobState:
    """Accumulated logprob results not yet sent to the detokenizer."""

    input_vals: List[Optional[float]] = field(default_factory=list)
    input_ids: List[int] = field(default_factory=list)
    input_top: List[Optional[list]] = field(default_factory=list)
    input_token_ids: List[Optional[list]] = field(default_factory=list)
    input_done: bool = False
    input_sent: bool = False
    output_vals: List[float] = field(default_factory=list)
    output_ids: List[int] = field(default_factory=list)
    output_top: List[list] = field(default_factory=list)
    output_token_ids: List[list] = field(default_factory=list)


class Req:
    def __init__(
        self,
        rid: str,
        origin_input_ids: List[int],
        sampling_params: SamplingParams,
        eos_token_ids: Set[int],
        seed: int,
        return_logprob: bool = False,
        logprob_start_len: int = -1,
        top_logprobs_num: int = 0,
        token_ids_logprob: Optional[List[int]] = None,
        stream: bool = False,
        input_text: Optional[str] = None,
        mm_inputs: Optional[MultimodalInputs] = None,
        lora_name: Optional[str] = None,
    ):
        self.rid = rid
        self.input_text = input_text
        self.origin_input_ids = list(origin_input_ids)
        # Images/videos: the radix cache keys their positions by content hash (see
        # multimodal/inputs.py); text-only requests use their ids as keys.
        self.mm_inputs = mm_inputs
        self.input_key_ids = mm_inputs.cache_key_ids(self.origin_input_ids) if mm_inputs else self.origin_input_ids
        # LoRA: the KV depends on the adapter, so its keys live in the adapter's own namespace
        # of the radix tree (no key of one adapter equals a key of another or of the base model).
        self.lora_name = lora_name
        if lora_name is not None:
            self.input_key_ids = [(lora_name, k) for k in self.input_key_ids]
        # M-RoPE: decode positions are the sequence index plus this shift.
        self.rope_delta = mm_inputs.mrope_delta if mm_inputs is not None else 0
        self.output_ids: List[int] = []
        self.sampling_params = sampling_params
        self.seed = seed
        params = sampling_params
        stop_ids = set(params.stop_token_ids or [])
        # Tokens that end generation (masked while len(output) < min_new_tokens).
        self.eos_token_ids: Set[int] = stop_ids | (set() if params.ignore_eos else set(eos_token_ids))
        self.return_logprob = return_logprob
        self.logprob_start_len = logprob_start_len
        self.top_logprobs_num = top_logprobs_num
        self.token_ids_logprob = token_ids_logprob
        self.stream = stream

        # memory
        self.req_pool_idx: Optional[int] = None
        self.prefix_indices: torch.Tensor = _EMPTY
        self.last_node: Any = None
        self.kv_committed_len = 0

        # scheduling
        self.fill_ids: List[int] = []
        self.extend_input_len = 0
        self.is_chunked = False  # the current prefill covers only part of fill_ids' target
        self.cached_tokens = 0
        self.prefilled_once = False
        self.num_retractions = 0
        self.to_abort: Optional[str] = None
        self.finished_reason: Optional[dict] = None

        # output
        self.sent_offset = 0
        self.logprobs = LogprobState() if return_logprob else None
        self.extra_meta: dict = {}
        # Pooling models: the pooled vector over the prompt chunks prefilled so far (layers/pooler.py).
        self.pooling: Any = None
        # grammar hook (structured generation); None when unconstrained. While compiling it holds
        # a Future; afterwards the per-request grammar object.
        self.grammar: Any = None
        self.jump_replaced = 0  # tokens re-tokenized by the last jump-forward
        self.jump_seq = -1  # forward passes numbered up to this one predate its last in-batch jump
        # Overlap scheduling: (launch seq, row in that launch's sampled ids) of a token sampled on
        # the device but not yet appended to output_ids; None when output_ids is complete.
        self.pending_ref: Optional[Tuple[int, int]] = None

    # ---------------------------------------------------------------- lengths
    @property
    def all_ids(self) -> List[int]:
        return self.origin_input_ids + self.output_ids

    def cache_key(self, length: int) -> List[int]:
        """Radix-cache key of the first `length` tokens of input + output."""
        n_in = len(self.input_key_ids)
        if length <= n_in:
            return self.input_key_ids[:length]
        return self.input_key_ids + self.output_ids[:length - n_in]

    @property
    def seqlen(self) -> int:
        return len(self.origin_input_ids) + len(self.output_ids)

    def finished(self) -> bool:
        return self.finished_reason is not None

    def is_live(self) -> bool:
        """Still generating from KV it holds: not finished, not sent back to (re-)prefill."""
        return self.finished_reason is None and self.req_pool_idx is not None

    def wants_input_logprobs(self) -> bool:
        return (
            self.return_logprob
            and not self.logprobs.input_done
            and 0 <= self.logprob_start_len < len(self.origin_input_ids)
        )

    def max_prefix_len(self) -> int:
        """Cap on the reusable cached prefix: one token must always be computed (its logits are
        sampled), and input logprobs need logits from position logprob_start_len - 1 onwards."""
        cap = len(self.fill_ids) - 1
        if self.wants_input_logprobs():
            cap = min(cap, max(self.logprob_start_len - 1, 0))
        # Never inside an image computed in one pass (Gemma 3): back to its start.
        return prefix_floor(self.mm_inputs, max(cap, 0))

    def chunk_end(self, start: int, end: int) -> int:
        """Where a prefill chunk [start, end) of this request may end: `end`, unless that splits an
        image computed in one pass (Gemma 3; see multimodal/bidirectional.py)."""
        return chunk_end(self.mm_inputs, start, end)

    def init_fill_ids(self) -> None:
        self.fill_ids = self.all_ids

    def reset_memory_state(self) -> None:
        self.req_pool_idx = None
        self.prefix_indices = _EMPTY
        self.last_node = None
        self.kv_committed_len = 0

    @property
    def num_output_tokens(self) -> int:
        """Output tokens sampled so far, including one still on the device (overlap)."""
        return len(self.output_ids) + (self.pending_ref is not None)

    def finishes_with_pending(self, context_len: int) -> bool:
        """Whether the token still on the device ends the request (length or context), so no
        further decode step is worth launching for it."""
        if self.pending_ref is None:
            return False
        n = self.num_output_tokens
        return n >= self.sampling_params.max_new_tokens or len(self.origin_input_ids) + n >= context_len

    def remaining_new_tokens(self) -> int:
        return max(self.sampling_params.max_new_tokens - self.num_output_tokens, 0)

    def __repr__(self) -> str:
        return f"Req(rid={self.rid!r}, input={len(self.origin_input_ids)}, output={len(self.output_ids)})"
