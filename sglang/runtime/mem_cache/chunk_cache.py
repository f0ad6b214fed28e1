"""The prefix cache used with `--disable-radix-cache`: it shares nothing across requests.

Each request owns every KV slot it wrote. The only thing "cached" is a chunked-prefill request's
own progress: `cache_unfinished_req` records its written slots as its prefix so that the next
chunk continues from them. Since the cache holds no slots, its sizes are zero and evict frees
nothing; `check_pool_invariant` counts a request's prefix as in flight when the cache is disabled.
"""

from __future__ import annotations

from typing import Any, List

import torch

from sglang.runtime.mem_cache.base_prefix_cache import BasePrefixCache, MatchResult, empty_indices


class ChunkCache(BasePrefixCache):
    disabled = True
    root_node = None  # no tree: prefix-aware policies must check `disabled` first

    def match_prefix(self, key: List[int]) -> MatchResult:
        return MatchResult(indices=empty_indices(), last_node=None)

    def insert(self, key: List[int], value: torch.Tensor) -> int:
        """Stores nothing: reports no tokens already present, so the caller keeps owning `value`."""
        return 0

    def cache_finished_req(self, req: Any) -> None:
        if req.req_pool_idx is not None:
            self.allocator.free(self.committed_slots(req))
            self.req_to_token_pool.free(req.req_pool_idx)
        req.req_pool_idx = None
        req.last_node = None
        req.prefix_indices = empty_indices()

    def cache_unfinished_req(self, req: Any) -> None:
        # The request still owns these slots; recording them lets the next chunk skip them.
        req.prefix_indices = self.committed_slots(req)

    def inc_lock_ref(self, node: Any) -> None:
        return None

    def dec_lock_ref(self, node: Any) -> None:
        return None

    def evict(self, num_tokens: int) -> int:
        return 0

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0

    def total_size(self) -> int:
        return 0

    def reset(self) -> None:
        return None

    def pretty_print(self) -> str:
        return "chunk cache (radix cache disabled; nothing shared)"
