"""Choose which waiting requests join the next prefill batch, under three budgets:

1. KV tokens: free + evictable slots, minus decode tokens reserved for running requests
   (their remaining output budget scaled by the adaptive new-token ratio), minus what this batch
   already planned.
2. `max_prefill_tokens`: new prompt tokens computed in one forward pass.
3. `chunked_prefill_size`: a request longer than what is left of the chunk budget is cut; the
   rest continues in later batches (the scheduler keeps it as `chunked_req`). A cut never falls
   inside an image that must be computed in one pass (Gemma 3): it moves back to the image's
   start, or on to its end when the chunk would otherwise be empty.

Each admitted request is matched against the radix tree and its prefix locked immediately, so
evictions triggered by later admissions cannot free it.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import List, Optional

from sglang.runtime.managers.req import Req

# A running request is assumed to need at most this many more tokens soon; beyond it the adaptive
# ratio and retraction take over. Keeps one request with max_new_tokens=1e6 from blocking admission.
_RESERVE_CLIP = 4096
# In-batch prefix sharing is detected on blocks of this many tokens; a request is deferred when it
# would recompute at least one whole block that another request of the batch computes.
_SHARE_BLOCK = 32


def _block_hashes(ids: List[int], start: int) -> List[int]:
    """Cumulative hashes of ids[:k * _SHARE_BLOCK] for each whole block ending after `start`."""
    out, h = [], 0
    for k in range(1, len(ids) // _SHARE_BLOCK + 1):
        h = hash((h, tuple(ids[(k - 1) * _SHARE_BLOCK : k * _SHARE_BLOCK])))
        if k * _SHARE_BLOCK > start:
            out.append(h)
    return out


class AddResult(Enum):
    ADDED = auto()
    DEFER = auto()  # shares an uncached prefix with a request already in this batch: next batch
    NO_TOKEN = auto()  # not enough KV memory: stop admitting
    OTHER = auto()  # another limit (requests, prefill tokens): stop admitting


class PrefillAdder:
    def __init__(self, tree_cache, allocator, req_to_token_pool, running: List[Req], new_token_ratio: float,
                 max_prefill_tokens: int, chunk_size: Optional[int], max_running: int):
        self.tree_cache = tree_cache
        self.allocator = allocator
        self.req_to_token_pool = req_to_token_pool
        self.new_token_ratio = new_token_ratio
        self.rem_input = max_prefill_tokens
        self.rem_chunk = chunk_size if chunk_size and chunk_size > 0 else None
        self.slots_left = max_running - len(running)
        # Free req_to_token rows. Not implied by slots_left: requests outside `running` hold rows
        # too (prefill-only and finished requests of the batch in flight, the chunked request).
        self.rows_left = req_to_token_pool.available_size()
        self.reserved = sum(self._reserve(r) for r in running)
        self.planned = 0  # KV tokens this batch will allocate
        self.can_run: List[Req] = []
        self.new_chunked_req: Optional[Req] = None
        self.batch_prefixes: set = set()  # block hashes of prefixes this batch computes

    def _reserve(self, req: Req) -> int:
        return int(min(req.remaining_new_tokens(), _RESERVE_CLIP) * self.new_token_ratio)

    def rem_total(self) -> int:
        avail = self.allocator.available_size() + self.tree_cache.evictable_size()
        return avail - self.reserved - self.planned

    def add_chunked_req(self, req: Req) -> None:
        """Continue a request whose previous chunk ran last batch (prefix already locked)."""
        target = req.all_ids
        start = req.kv_committed_len
        take = len(target) - start
        if self.rem_chunk is not None:
            take = min(take, self.rem_chunk)
        take = max(min(take, self.rem_total(), self.rem_input), 1)
        take = req.chunk_end(start, start + take) - start  # never inside an image of one pass
        req.fill_ids = target[: start + take]
        req.extend_input_len = take
        req.is_chunked = start + take < len(target)
        self._commit(req, take, reserve=not req.is_chunked)
        if req.is_chunked:
            self.new_chunked_req = req

    def add_one(self, req: Req) -> AddResult:
        if self.slots_left <= 0 or self.rem_input <= 0 or (self.rem_chunk is not None and self.rem_chunk <= 0):
            return AddResult.OTHER
        if req.req_pool_idx is None and self.rows_left <= 0:
            return AddResult.OTHER  # rows come back when the batch in flight is processed
        req.init_fill_ids()
        match = self.tree_cache.match_prefix(req.cache_key(req.max_prefix_len()))
        prefix_len = len(match.indices)
        extend = len(req.fill_ids) - prefix_len
        blocks = [] if self.tree_cache.disabled else _block_hashes(req.cache_key(len(req.fill_ids)), prefix_len)
        if blocks and blocks[0] in self.batch_prefixes:
            # Another request of this batch computes the same uncached block; once it is cached
            # (right after this batch) this one reuses it instead of computing it again.
            return AddResult.DEFER
        # Lock before measuring: the matched prefix stops being evictable memory once it is ours.
        self.tree_cache.inc_lock_ref(match.last_node)
        rem_total = self.rem_total()
        chunk_cap = self.rem_chunk if self.rem_chunk is not None else extend
        if extend + self._reserve(req) <= rem_total and extend <= self.rem_input and extend <= chunk_cap:
            take = extend
        elif self.can_run or self.new_chunked_req is not None:
            # Something is already admitted: let this one wait for a later batch.
            self.tree_cache.dec_lock_ref(match.last_node)
            return AddResult.NO_TOKEN if extend > rem_total else AddResult.OTHER
        else:
            # Alone in the batch: take a chunk of what fits, so long prompts always progress.
            take = min(extend, rem_total, self.rem_input, chunk_cap)
            if take > 0:  # never inside an image of one pass: back to its start, or on to its end
                take = req.chunk_end(prefix_len, prefix_len + take) - prefix_len
            if take <= 0 or take > rem_total:
                self.tree_cache.dec_lock_ref(match.last_node)
                return AddResult.NO_TOKEN
        self._lock(req, match)
        self.batch_prefixes.update(blocks)
        req.fill_ids = req.fill_ids[: prefix_len + take]
        req.extend_input_len = take
        req.is_chunked = take < extend
        self._commit(req, take, reserve=not req.is_chunked)
        if req.is_chunked:
            self.new_chunked_req = req
        return AddResult.ADDED

    def _lock(self, req: Req, match) -> None:
        """Record the (already locked) match on the request."""
        req.prefix_indices = match.indices
        req.last_node = match.last_node
        if not req.prefilled_once:
            req.cached_tokens = len(match.indices)
        self.slots_left -= 1
        if req.req_pool_idx is None:
            self.rows_left -= 1

    def _commit(self, req: Req, take: int, reserve: bool) -> None:
        self.planned += take
        if reserve:
            self.reserved += self._reserve(req)
        self.rem_input -= take
        if self.rem_chunk is not None:
            self.rem_chunk -= take
        self.can_run.append(req)
