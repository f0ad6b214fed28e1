"""KV concatenate-and-append: put `parent + suffix_1 + ... + suffix_N` into the radix cache by
copying the children's cached KV, without running the model.

Each child is the parent's ids followed by that child's continuation (parent + child_i was run,
so its KV is in the tree). The split point of child i is the longest common prefix of the parent's
ids and the child's ids (tokenization may differ at the boundary); suffix_i is the rest of child i.

Accepted approximation: copied K entries keep the RoPE rotation of the position they were
computed at (inside child i, right after the parent), not their position in the new sequence,
and each suffix's KV was computed without seeing the other suffixes. Later tokens attend to
them as they are; this is what makes the join cheap (a memory copy instead of a prefill).

The new sequence is cut at the first token whose source KV is not cached (a partial result,
reported with `complete=False`). Everything runs between scheduler steps, so the only hazards are
eviction (the source paths are locked while slots are allocated) and leaks (every fresh slot is
either handed to the tree or freed).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from sglang.runtime.managers.io_struct import ConcatAppendReply


def common_prefix_len(a: List[int], b: List[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def concat_plan(parent_ids: List[int], children_ids: List[List[int]]) -> Tuple[List[int], List[Tuple[int, int]]]:
    """The concatenated ids and, per position, where its KV comes from: (-1, i) for parent
    position i, (child, j) for position j of that child."""
    seq = list(parent_ids)
    origin = [(-1, i) for i in range(len(parent_ids))]
    for c, child in enumerate(children_ids):
        split = common_prefix_len(parent_ids, child)
        seq.extend(child[split:])
        origin.extend((c, j) for j in range(split, len(child)))
    return seq, origin


class _Locks:
    """Lock references taken during the operation, all released at the end."""

    def __init__(self, cache: Any):
        self.cache = cache
        self.nodes: List[Any] = []

    def match(self, key: List[int]) -> torch.Tensor:
        result = self.cache.match_prefix(key)
        self.cache.inc_lock_ref(result.last_node)
        self.nodes.append(result.last_node)
        return result.indices

    def release(self) -> None:
        for node in reversed(self.nodes):
            self.cache.dec_lock_ref(node)
        self.nodes = []


def _available_prefix(origin: List[Tuple[int, int]], parent_slots: torch.Tensor,
                      child_slots: List[torch.Tensor]) -> Tuple[int, List[int]]:
    """How many leading positions have cached source KV, and those source slots."""
    parent = parent_slots.tolist()
    children = [s.tolist() for s in child_slots]
    sources: List[int] = []
    for c, j in origin:
        slots = parent if c < 0 else children[c]
        if j >= len(slots):
            break
        sources.append(slots[j])
    return len(sources), sources


def _alloc(cache: Any, allocator: Any, n: int) -> Optional[torch.Tensor]:
    slots = allocator.alloc(n)
    if slots is None:
        cache.evict(n - allocator.available_size())
        slots = allocator.alloc(n)
    return slots


def concat_and_append(cache: Any, allocator: Any, kv_pool: Any, parent_ids: List[int],
                      children_ids: List[List[int]]) -> ConcatAppendReply:
    if getattr(cache, "disabled", False):
        return ConcatAppendReply(False, "concat_and_append needs the radix cache, but the server runs with "
                                        "--disable-radix-cache")
    if not children_ids:
        return ConcatAppendReply(False, "concat_and_append needs at least one child")
    seq, origin = concat_plan(parent_ids, children_ids)
    locks = _Locks(cache)
    try:
        # Lock every source path first: allocating below may evict, and must not evict these.
        parent_slots = locks.match(parent_ids)
        child_slots = [locks.match(child) for child in children_ids]
        end, sources = _available_prefix(origin, parent_slots, child_slots)
        prefix = locks.match(seq)  # a previous identical call may have cached more than `end`
        start = len(prefix)
        end = max(end, start)
        reply = _copy_and_insert(cache, allocator, kv_pool, seq[:end], prefix, sources[start:end])
    finally:
        locks.release()
    if reply.success:
        reply.requested_tokens = len(seq)
        reply.complete = end == len(seq)
        if not reply.complete:
            reply.message = (f"partial: stopped after {end} of {len(seq)} tokens, at the first token whose "
                             f"source KV is not in the cache (prefill that child first: prefill_children=true)")
    return reply


def _copy_and_insert(cache: Any, allocator: Any, kv_pool: Any, key: List[int], prefix: torch.Tensor,
                     sources: List[int]) -> ConcatAppendReply:
    n = len(sources)
    if n == 0:
        return ConcatAppendReply(True, input_ids=key, cached_prefix_tokens=len(prefix))
    dst = _alloc(cache, allocator, n)
    if dst is None:
        return ConcatAppendReply(False, f"not enough free KV memory to copy {n} tokens "
                                        f"({allocator.available_size()} free after eviction)")
    src = torch.tensor(sources, dtype=torch.int64)
    kv_pool.copy_slots(dst.to(kv_pool.device), src.to(kv_pool.device))
    present = cache.insert(key, torch.cat([prefix, dst]))
    if present > len(prefix):  # cannot happen between steps; never leak if it ever does
        allocator.free(dst[: present - len(prefix)])
    return ConcatAppendReply(True, input_ids=key, copied_tokens=n, cached_prefix_tokens=len(prefix))
