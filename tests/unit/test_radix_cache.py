"""RadixCache / ChunkCache: hand-checked edge cases and a stateful scheduler simulation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant, empty_indices
from sglang.runtime.mem_cache.chunk_cache import ChunkCache
from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.mem_cache.radix_cache import RadixCache


@dataclass
class FakeReq:
    """Stand-in for the scheduler's Req with exactly the attributes the cache contract names."""

    origin_input_ids: List[int]
    output_ids: List[int] = field(default_factory=list)
    req_pool_idx: Optional[int] = None
    kv_committed_len: int = 0
    prefix_indices: torch.Tensor = field(default_factory=empty_indices)
    last_node: Any = None


class CheckedAllocator(TokenSlotAllocator):
    """Records which slots are handed out, so double frees and frees of free slots fail at once."""

    def clear(self) -> None:
        super().clear()
        self.handed_out: set = set()

    def alloc(self, n: int) -> Optional[torch.Tensor]:
        slots = super().alloc(n)
        if slots is not None:
            got = set(slots.tolist())
            assert len(got) == n and not (got & self.handed_out), "allocator handed out a slot twice"
            self.handed_out |= got
        return slots

    def free(self, slots: torch.Tensor) -> None:
        for s in slots.tolist():
            assert s in self.handed_out, f"slot {s} freed but not allocated (double free?)"
            self.handed_out.remove(s)
        super().free(slots)


def make(size: int = 64, rows: int = 8, ctx: int = 64, cls=RadixCache):
    alloc = CheckedAllocator(size, "cpu")
    pool = ReqToTokenPool(rows, ctx, "cpu")
    return alloc, pool, cls(pool, alloc)


def put(cache: RadixCache, alloc: TokenSlotAllocator, key: List[int]) -> torch.Tensor:
    """Insert `key` with fresh slots, freeing the duplicated ones like the cache_* hooks do."""
    slots = alloc.alloc(len(key))
    n_dup = cache.insert(key, slots)
    alloc.free(slots[:n_dup])
    return slots


def shape(cache: RadixCache) -> Dict[tuple, Any]:
    """The tree as nested {edge tuple: children}, for hand-checked comparisons."""

    def rec(node):
        return {tuple(c.key): rec(c) for c in node.children.values()}

    return rec(cache.root_node)


def start_req(cache, alloc, pool, ids: List[int]) -> FakeReq:
    """Admit a request: match, lock, allocate the rest, write its row (as the scheduler does)."""
    req = FakeReq(list(ids))
    m = cache.match_prefix(ids)
    cache.inc_lock_ref(m.last_node)
    req.prefix_indices, req.last_node = m.indices, m.last_node
    req.req_pool_idx = pool.alloc(1)[0]
    new = alloc.alloc(len(ids) - len(m.indices))
    pool.write(req.req_pool_idx, 0, len(ids), torch.cat([m.indices, new]))
    req.kv_committed_len = len(ids)
    return req


# ---------------------------------------------------------------------------- edge cases
def test_empty_tree_and_empty_key():
    alloc, _, cache = make()
    m = cache.match_prefix([])
    assert m.indices.numel() == 0 and m.indices.dtype == torch.int64 and m.last_node is cache.root_node
    assert cache.insert([], empty_indices()) == 0
    put(cache, alloc, [1, 2])
    assert cache.match_prefix([]).last_node is cache.root_node
    assert cache.match_prefix([7, 7]).indices.numel() == 0
    assert cache.total_size() == 2


def test_match_inside_edge_splits_and_keeps_sizes():
    alloc, _, cache = make()
    slots = put(cache, alloc, [1, 2, 3, 4])
    m = cache.match_prefix([1, 2])
    assert m.indices.tolist() == slots[:2].tolist()
    assert shape(cache) == {(1, 2): {(3, 4): {}}}
    assert m.last_node.key == [1, 2] and m.last_node.parent is cache.root_node
    assert (cache.total_size(), cache.evictable_size(), cache.protected_size()) == (4, 4, 0)
    m2 = cache.match_prefix([1, 2, 9])  # diverges right at the split point: no new split
    assert m2.last_node is m.last_node and shape(cache) == {(1, 2): {(3, 4): {}}}


def test_match_diverging_inside_edge_and_longer_key():
    alloc, _, cache = make()
    slots = put(cache, alloc, [1, 2, 3, 4])
    m = cache.match_prefix([1, 2, 3, 9, 9])
    assert m.indices.tolist() == slots[:3].tolist() and shape(cache) == {(1, 2, 3): {(4,): {}}}
    m = cache.match_prefix([1, 2, 3, 4, 5, 6])  # longer than anything stored
    assert m.indices.tolist() == slots.tolist() and m.last_node.key == [4]


def test_insert_existing_path_and_strict_prefix():
    alloc, _, cache = make()
    first = put(cache, alloc, [1, 2, 3, 4])
    assert cache.insert([1, 2, 3, 4], alloc.alloc(4)) == 4  # all 4 duplicate: the tree keeps its own
    assert shape(cache) == {(1, 2, 3, 4): {}} and cache.total_size() == 4
    assert cache.insert([1, 2], first[:2]) == 2  # strict prefix of an edge: split, nothing added
    assert shape(cache) == {(1, 2): {(3, 4): {}}} and cache.total_size() == 4


def test_insert_branches_and_returns_shared_length():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3])
    slots = alloc.alloc(4)
    assert cache.insert([1, 2, 4, 5], slots) == 2
    assert shape(cache) == {(1, 2): {(3,): {}, (4, 5): {}}}
    assert cache.match_prefix([1, 2, 4, 5]).indices[2:].tolist() == slots[2:].tolist()
    assert cache.total_size() == 5


def test_insert_rejects_length_mismatch():
    _, _, cache = make()
    with pytest.raises(ValueError, match="one KV slot per token"):
        cache.insert([1, 2], torch.tensor([5]))


def test_locks_move_tokens_between_evictable_and_protected():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3])
    put(cache, alloc, [1, 2, 4])
    a = cache.match_prefix([1, 2, 3]).last_node
    b = cache.match_prefix([1, 2, 4]).last_node
    cache.inc_lock_ref(a)
    assert (cache.evictable_size(), cache.protected_size()) == (1, 3)
    cache.inc_lock_ref(b)
    assert (cache.evictable_size(), cache.protected_size()) == (0, 4)
    assert a.parent.lock_ref == 2 and cache.root_node.lock_ref == 0
    cache.dec_lock_ref(a)
    assert (cache.evictable_size(), cache.protected_size()) == (1, 3)
    cache.dec_lock_ref(b)
    assert (cache.evictable_size(), cache.protected_size()) == (4, 0)
    with pytest.raises(AssertionError, match="below zero"):
        cache.dec_lock_ref(b)


def test_split_of_locked_node_keeps_lock_on_both_parts():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3, 4])
    leaf = cache.match_prefix([1, 2, 3, 4]).last_node
    cache.inc_lock_ref(leaf)
    upper = cache.match_prefix([1, 2]).last_node
    assert upper.lock_ref == 1 and leaf.parent is upper and cache.protected_size() == 4
    assert cache.evict(10) == 0
    cache.dec_lock_ref(leaf)
    assert upper.lock_ref == 0 and (cache.evictable_size(), cache.protected_size()) == (4, 0)


def test_evict_lru_leaf_first():
    alloc, _, cache = make(size=16)
    a, b, c = (put(cache, alloc, [t, t]) for t in (1, 2, 3))
    cache.match_prefix([1, 1])  # A becomes most recent: B is now the oldest
    assert cache.evict(2) == 2
    assert shape(cache) == {(1, 1): {}, (3, 3): {}}
    assert not (set(b.tolist()) & alloc.handed_out) and alloc.available_size() == 12


def test_evict_cascades_to_parent_and_overshoots_whole_leaves():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2])
    put(cache, alloc, [1, 2, 3, 4, 5])
    put(cache, alloc, [7])  # most recent: must survive
    assert cache.evict(4) == 5  # leaf [3, 4, 5], then its parent [1, 2] once it became a leaf
    assert shape(cache) == {(7,): {}} and alloc.available_size() == 63
    put(cache, alloc, [8, 8, 8])
    assert cache.evict(1) == 1 and cache.evict(1) == 3  # whole leaves go, even when fewer were asked
    assert shape(cache) == {} and cache.total_size() == 0 and alloc.available_size() == 64


def test_evict_skips_locked_paths_and_root():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3])
    put(cache, alloc, [1, 2, 4, 4])
    put(cache, alloc, [5])
    cache.inc_lock_ref(cache.match_prefix([1, 2, 3]).last_node)
    assert cache.evict(100) == 3  # [4, 4] and [5]; [1, 2] -> [3] stays locked
    assert shape(cache) == {(1, 2): {(3,): {}}} and cache.protected_size() == 3


def test_reset_frees_everything_and_refuses_while_locked():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3])
    put(cache, alloc, [4])
    node = cache.match_prefix([4]).last_node
    cache.inc_lock_ref(node)
    with pytest.raises(RuntimeError, match="finish or abort"):
        cache.reset()
    cache.dec_lock_ref(node)
    cache.reset()
    assert alloc.available_size() == 64 and cache.total_size() == 0 and shape(cache) == {}


def test_pretty_print_shows_shape():
    alloc, _, cache = make()
    put(cache, alloc, [1, 2, 3])
    put(cache, alloc, [1, 2, 4])
    assert cache.pretty_print().splitlines()[1:] == ["  [1, 2] len=2 lock=0", "    [3] len=1 lock=0",
                                                     "    [4] len=1 lock=0"]


# ---------------------------------------------------------------------------- request hooks
def test_cache_finished_req_frees_duplicates_and_row():
    alloc, pool, cache = make()
    r1 = start_req(cache, alloc, pool, [1, 2, 3, 4])
    # r2 runs the same prompt without sharing (admitted before r1 was cached): its KV duplicates.
    r2 = FakeReq([1, 2, 3, 4], req_pool_idx=pool.alloc(1)[0], kv_committed_len=4)
    pool.write(r2.req_pool_idx, 0, 4, alloc.alloc(4))
    check_pool_invariant(alloc, cache, [r1, r2])
    cache.cache_finished_req(r1)
    cache.cache_finished_req(r2)
    assert cache.total_size() == 4 and alloc.available_size() == 60 and pool.available_size() == 8
    assert r2.req_pool_idx is None and r2.last_node is None
    r3 = start_req(cache, alloc, pool, [1, 2, 3, 4, 5, 6])
    assert r3.prefix_indices.numel() == 4 and cache.protected_size() == 4
    r3.output_ids = [7]
    cache.cache_finished_req(r3)
    assert shape(cache) == {(1, 2, 3, 4): {(5, 6): {}}} and cache.protected_size() == 0
    check_pool_invariant(alloc, cache, [])


def test_cache_unfinished_req_relocks_and_points_row_at_tree_slots():
    alloc, pool, cache = make()
    other = start_req(cache, alloc, pool, [1, 2, 3])
    req = FakeReq([1, 2, 3, 4, 5], req_pool_idx=pool.alloc(1)[0], kv_committed_len=3)
    pool.write(req.req_pool_idx, 0, 3, alloc.alloc(3))  # same tokens as `other`, own slots
    cache.cache_finished_req(other)
    tree_slots = cache.match_prefix([1, 2, 3]).indices
    cache.cache_unfinished_req(req)
    assert req.prefix_indices.tolist() == tree_slots.tolist()
    assert pool.req_to_token[req.req_pool_idx, :3].tolist() == tree_slots.tolist()
    assert req.last_node.lock_ref == 1 and cache.protected_size() == 3 and req.req_pool_idx is not None
    check_pool_invariant(alloc, cache, [req])
    req.kv_committed_len = 5  # the next chunk wrote two more tokens
    pool.write(req.req_pool_idx, 3, 5, alloc.alloc(2))
    cache.cache_unfinished_req(req)
    assert cache.protected_size() == 5 and cache.evictable_size() == 0 and req.prefix_indices.numel() == 5
    check_pool_invariant(alloc, cache, [req])


def test_check_pool_invariant_reports_the_numbers():
    alloc, _, cache = make()
    alloc.alloc(3)  # leaked: nobody owns these slots
    with pytest.raises(AssertionError, match=r"free=61 \+ evictable=0 \+ protected=0 \+ in_flight=0"):
        check_pool_invariant(alloc, cache, [])


def test_chunk_cache_owns_nothing():
    alloc, pool, cache = make(cls=ChunkCache)
    assert cache.disabled and cache.match_prefix([1, 2]).indices.numel() == 0
    req = FakeReq([1, 2, 3, 4], req_pool_idx=pool.alloc(1)[0], kv_committed_len=2)
    pool.write(req.req_pool_idx, 0, 2, alloc.alloc(2))
    cache.cache_unfinished_req(req)
    assert req.prefix_indices.tolist() == pool.req_to_token[req.req_pool_idx, :2].tolist()
    check_pool_invariant(alloc, cache, [req])
    assert cache.evict(10) == 0 and cache.total_size() == cache.evictable_size() == 0
    cache.cache_finished_req(req)
    assert alloc.available_size() == 64 and pool.available_size() == 8 and req.req_pool_idx is None


# ---------------------------------------------------------------------------- stateful simulation
SIZE, ROWS, CTX = 64, 6, 40
TOKEN = st.integers(0, 2)  # a tiny alphabet so that prompts share prefixes


class SchedulerSim(RuleBasedStateMachine):
    """Drives the cache the way the scheduler does; `shadow` maps slot -> token written there."""

    def __init__(self):
        super().__init__()
        self.alloc, self.pool, self.cache = make(SIZE, ROWS, CTX)
        self.live: List[FakeReq] = []
        self.finished_keys: List[List[int]] = []
        self.shadow: Dict[int, int] = {}

    def _alloc(self, n: int) -> Optional[torch.Tensor]:
        slots = self.alloc.alloc(n)
        if slots is None:
            self.cache.evict(n - self.alloc.available_size())
            slots = self.alloc.alloc(n)
        return slots

    def _write_new(self, req: FakeReq, slots: torch.Tensor) -> None:
        start, ids = req.kv_committed_len, req.origin_input_ids + req.output_ids
        self.pool.write(req.req_pool_idx, start, start + len(slots), slots)
        for i, s in enumerate(slots.tolist()):
            self.shadow[s] = ids[start + i]
        req.kv_committed_len += len(slots)

    @precondition(lambda self: self.pool.available_size() > 0)
    @rule(prompt=st.lists(TOKEN, min_size=1, max_size=20), chunk=st.integers(1, 20))
    def start(self, prompt: List[int], chunk: int) -> None:
        n = min(chunk, len(prompt))
        m = self.cache.match_prefix(prompt[:n])
        self.cache.inc_lock_ref(m.last_node)
        slots = self._alloc(n - len(m.indices))
        if slots is None:  # not enough memory: undo the admission
            self.cache.dec_lock_ref(m.last_node)
            return
        req = FakeReq(prompt, req_pool_idx=self.pool.alloc(1)[0], prefix_indices=m.indices, last_node=m.last_node)
        self.pool.write(req.req_pool_idx, 0, len(m.indices), m.indices)
        req.kv_committed_len = len(m.indices)
        self._write_new(req, slots)
        self.live.append(req)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), k=st.integers(1, 6), toks=st.lists(TOKEN, min_size=6, max_size=6))
    def extend(self, i: int, k: int, toks: List[int]) -> None:
        req = self.live[i % len(self.live)]
        k = min(k, CTX - req.kv_committed_len)
        missing = req.kv_committed_len + k - len(req.origin_input_ids) - len(req.output_ids)
        slots = self._alloc(k) if k > 0 else None
        if slots is None:
            return
        req.output_ids.extend(toks[: max(missing, 0)])  # decoding produced these tokens
        self._write_new(req, slots)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def chunk_step(self, i: int) -> None:
        req = self.live[i % len(self.live)]
        self.cache.cache_unfinished_req(req)
        row = self.pool.req_to_token[req.req_pool_idx, : req.kv_committed_len]
        assert req.prefix_indices.tolist() == row.tolist()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99), aborted=st.booleans())
    def finish(self, i: int, aborted: bool) -> None:
        req = self.live.pop(i % len(self.live))
        key = (req.origin_input_ids + req.output_ids)[: req.kv_committed_len]
        self.cache.cache_finished_req(req)
        assert req.req_pool_idx is None and req.last_node is None
        if not aborted and key:
            self.finished_keys.append(key)

    @rule(n=st.integers(0, 40))
    def evict(self, n: int) -> None:
        before = self.cache.evictable_size()
        freed = self.cache.evict(n)
        assert freed >= min(n, before) and self.cache.evictable_size() == before - freed

    @precondition(lambda self: not self.live)
    @rule()
    def reset(self) -> None:
        self.cache.reset()
        assert self.alloc.available_size() == SIZE and self.cache.total_size() == 0

    @precondition(lambda self: self.finished_keys)
    @rule(i=st.integers(0, 99))
    def match_finished(self, i: int) -> None:
        key = self.finished_keys[i % len(self.finished_keys)]
        got = self.cache.match_prefix(key).indices.tolist()
        assert [self.shadow[s] for s in got] == key[: len(got)]

    @invariant()
    def pool_accounting(self) -> None:
        check_pool_invariant(self.alloc, self.cache, self.live)

    @invariant()
    def every_slot_owned_once(self) -> None:
        owned = []
        for node in self.cache.all_nodes():
            owned += node.value.tolist()
            assert [self.shadow[s] for s in node.value.tolist()] == node.key
        for req in self.live:
            row = self.pool.req_to_token[req.req_pool_idx, : req.kv_committed_len].tolist()
            assert [self.shadow[s] for s in row] == (req.origin_input_ids + req.output_ids)[: len(row)]
            assert row[: len(req.prefix_indices)] == req.prefix_indices.tolist()
            owned += row[len(req.prefix_indices) :]
        assert len(owned) == len(set(owned)), "a KV slot is owned twice"
        assert set(owned) == self.alloc.handed_out, "a KV slot was lost (allocated but owned by nobody)"

    @invariant()
    def tree_counters_and_locks(self) -> None:
        expected: Dict[int, int] = {}
        for req in self.live:
            node = req.last_node
            while node is not self.cache.root_node:
                expected[id(node)] = expected.get(id(node), 0) + 1
                node = node.parent
        evictable = protected = 0
        for node in self.cache.all_nodes():
            for first, child in node.children.items():
                assert child.parent is node and child.key and child.key[0] == first
                assert len(child.key) == len(child.value)
            if node is not self.cache.root_node:
                assert node.lock_ref == expected.get(id(node), 0)
                protected += len(node) if node.lock_ref else 0
                evictable += 0 if node.lock_ref else len(node)
        assert (evictable, protected) == (self.cache.evictable_size(), self.cache.protected_size())


SchedulerSim.TestCase.settings = settings(
    max_examples=120, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSchedulerSim = SchedulerSim.TestCase
