"""The prefix-cache interface the scheduler talks to, plus the KV-pool accounting check.

Two implementations: RadixCache (RadixAttention, prefixes shared across requests) and ChunkCache
(`--disable-radix-cache`: nothing is shared, each request owns all of its KV slots).

Ownership of KV slots, which `check_pool_invariant` verifies, is always one of:
free (in the allocator), held by the cache (evictable or protected by a lock), or in flight
(written by a live request and not yet handed to the cache).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, List

import torch

if TYPE_CHECKING:
    from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator


def empty_indices() -> torch.Tensor:
    """A fresh empty int64 slot tensor (fresh so that no caller can mutate a shared one)."""
    return torch.empty((0,), dtype=torch.int64)


@dataclass
class MatchResult:
    indices: torch.Tensor  # int64 KV slots of the matched prefix (len == matched tokens)
    last_node: Any  # node to lock; the root when nothing matched (None for ChunkCache)


class BasePrefixCache(ABC):
    """Maps token-id prefixes to the KV slots that hold them.

    Requests passed to `cache_*_req` follow the scheduler's Req contract: `origin_input_ids`,
    `output_ids`, `req_pool_idx`, `kv_committed_len`, `prefix_indices`, `last_node`.
    """

    disabled: bool = False

    def __init__(self, req_to_token_pool: "ReqToTokenPool", allocator: "TokenSlotAllocator"):
        self.req_to_token_pool = req_to_token_pool
        self.allocator = allocator

    @abstractmethod
    def match_prefix(self, key: List[int]) -> MatchResult: ...

    @abstractmethod
    def insert(self, key: List[int], value: torch.Tensor) -> int:
        """Add `key -> value`; return how many leading tokens the cache already held (the caller
        owns and must free value[:that many] that are not already the cache's own slots)."""

    @abstractmethod
    def cache_finished_req(self, req: Any) -> None: ...

    @abstractmethod
    def cache_unfinished_req(self, req: Any) -> None: ...

    @abstractmethod
    def inc_lock_ref(self, node: Any) -> None: ...

    @abstractmethod
    def dec_lock_ref(self, node: Any) -> None: ...

    @abstractmethod
    def evict(self, num_tokens: int) -> int: ...

    @abstractmethod
    def evictable_size(self) -> int: ...

    @abstractmethod
    def protected_size(self) -> int: ...

    @abstractmethod
    def total_size(self) -> int: ...

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def pretty_print(self) -> str: ...

    # ---------------------------------------------------------------- shared helpers
    @staticmethod
    def committed_key(req: Any) -> List[int]:
        """Keys of the tokens whose KV the request has written (the part that can be cached):
        token ids, with image/video positions keyed by content (Req.input_key_ids)."""
        ids = getattr(req, "input_key_ids", req.origin_input_ids) + req.output_ids
        if req.kv_committed_len > len(ids):
            raise ValueError(
                f"kv_committed_len={req.kv_committed_len} exceeds the request's {len(ids)} token ids; "
                "the scheduler must advance kv_committed_len only over written tokens"
            )
        return ids[: req.kv_committed_len]

    def committed_slots(self, req: Any) -> torch.Tensor:
        """The request's written KV slots, copied out of its req_to_token row as int64 (from the
        host mirror: reading the device table would wait for the batch in flight)."""
        if req.req_pool_idx is None:
            raise ValueError("request holds no req_to_token row (req_pool_idx is None); nothing to cache")
        return self.req_to_token_pool.read(req.req_pool_idx, 0, req.kv_committed_len)


def in_flight_tokens(cache: BasePrefixCache, live_reqs: Iterable[Any]) -> int:
    """KV slots written by live requests that the cache does not own."""
    total = 0
    for req in live_reqs:
        if req.req_pool_idx is None:  # not admitted yet, or retracted: owns nothing
            continue
        # With the cache disabled the request owns even its "prefix" slots.
        tree_owned = 0 if cache.disabled else len(req.prefix_indices)
        total += req.kv_committed_len - tree_owned
    return total


def check_pool_invariant(allocator: Any, cache: BasePrefixCache, live_reqs: Iterable[Any]) -> None:
    """Assert free + evictable + protected + in_flight == allocator.size (no slot leaked or doubled)."""
    free = allocator.available_size()
    evictable = cache.evictable_size()
    protected = cache.protected_size()
    in_flight = in_flight_tokens(cache, live_reqs)
    total = free + evictable + protected + in_flight
    assert total == allocator.size, (
        f"KV pool accounting broken: free={free} + evictable={evictable} + protected={protected} "
        f"+ in_flight={in_flight} = {total}, expected allocator.size={allocator.size}"
    )
