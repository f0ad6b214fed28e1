"""KV concatenate-and-append in the scheduler (in-process harness, no subprocesses).

The new sequence parent + suffix_1 + ... + suffix_N must be in the radix cache with KV copied
bit for bit from the children's cached slots, the pool accounting must hold, nothing may leak,
and a later request with those ids must find them cached.
"""

from __future__ import annotations

import random
from typing import List

import pytest
import torch

from sglang.runtime.managers.io_struct import ConcatAppendReply, ConcatAppendReq
from sglang.runtime.managers.kv_concat import concat_plan
from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

PREFILL_ONLY = {"max_new_tokens": 0}


@pytest.fixture(scope="module")
def model_path() -> str:
    return tiny_model_dir("llama")


def _ids(rng: random.Random, vocab: int, n: int) -> List[int]:
    return [rng.randrange(3, vocab) for _ in range(n)]


def _cache(h: SchedulerHarness, rid: str, ids: List[int]) -> None:
    h.submit(rid, input_ids=ids, params=PREFILL_ONLY)
    h.run_until_idle()


def _concat(h: SchedulerHarness, parent: List[int], children: List[List[int]]) -> ConcatAppendReply:
    reply = h.scheduler.handle(ConcatAppendReq(parent, children))
    assert isinstance(reply, ConcatAppendReply)
    return reply


def _slots(h: SchedulerHarness, ids: List[int]) -> torch.Tensor:
    match = h.scheduler.tree_cache.match_prefix(ids)
    assert len(match.indices) == len(ids), "sequence not fully cached"
    return match.indices


def _assert_kv_equal(h: SchedulerHarness, dst: torch.Tensor, src: torch.Tensor) -> None:
    pool = h.runner.kv_pool
    for layer in range(pool.num_layers):
        assert torch.equal(pool.k_buffer[layer][dst], pool.k_buffer[layer][src])
        assert torch.equal(pool.v_buffer[layer][dst], pool.v_buffer[layer][src])
    assert bool((pool.k_buffer[0][dst] != 0).any()), "copied KV is all zeros: nothing was copied"


def _assert_clean(h: SchedulerHarness) -> None:
    check_pool_invariant(h.runner.allocator, h.scheduler.tree_cache, h.live_reqs())
    assert h.scheduler.check_memory_idle() is None
    assert h.scheduler.tree_cache.protected_size() == 0


def test_concat_copies_children_kv_and_is_reused(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=512)
    rng = random.Random(0)
    vocab = h.runner.vocab_size()
    parent = _ids(rng, vocab, 20)
    suffixes = [_ids(rng, vocab, n) for n in (7, 5, 9)]
    children = [parent + s for s in suffixes]
    for i, child in enumerate(children):
        _cache(h, f"c{i}", child)
    reply = _concat(h, parent, children)
    seq = parent + sum(suffixes, [])
    assert reply.success and reply.complete, reply.message
    assert reply.input_ids == seq and reply.requested_tokens == len(seq)
    # parent + suffix_1 is child 1 itself: already cached, the rest is copied.
    assert reply.cached_prefix_tokens == len(children[0])
    assert reply.copied_tokens == len(seq) - len(children[0])
    _assert_clean(h)

    seq_slots = _slots(h, seq)
    start = len(children[0])
    for child, suffix in zip(children[1:], suffixes[1:]):
        src = _slots(h, child)[len(parent):]
        dst = seq_slots[start : start + len(suffix)]
        assert not set(dst.tolist()) & set(src.tolist()), "copies must live in fresh slots"
        _assert_kv_equal(h, dst, src)
        start += len(suffix)

    h.submit("reuse", input_ids=seq + [5, 6], params={"max_new_tokens": 3, "temperature": 0})
    res = h.run_until_idle()["reuse"]
    assert res.finished_reason["type"] == "length" and res.cached_tokens >= len(seq) - 1
    _assert_clean(h)
    assert h.scheduler.flush_cache().success
    assert h.runner.allocator.available_size() == h.runner.max_total_num_tokens


def test_repeated_concat_copies_nothing_more(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=256)
    rng = random.Random(1)
    parent = _ids(rng, h.runner.vocab_size(), 8)
    children = [parent + _ids(rng, h.runner.vocab_size(), 4) for _ in range(2)]
    for i, child in enumerate(children):
        _cache(h, f"c{i}", child)
    first = _concat(h, parent, children)
    free_after_first = h.runner.allocator.available_size()
    second = _concat(h, parent, children)
    assert second.success and second.complete and second.copied_tokens == 0
    assert second.input_ids == first.input_ids and second.cached_prefix_tokens == len(first.input_ids)
    assert h.runner.allocator.available_size() == free_after_first
    _assert_clean(h)


def test_uncached_child_tail_gives_a_partial_result(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=256)
    rng = random.Random(2)
    vocab = h.runner.vocab_size()
    parent = _ids(rng, vocab, 10)
    cached_child = parent + _ids(rng, vocab, 4)
    _cache(h, "a", cached_child)
    # A generated child: its last sampled token never went through the model, so its KV is absent.
    h.submit("b", input_ids=parent + [7, 8], params={"max_new_tokens": 4, "temperature": 0})
    generated = h.run_until_idle()["b"].output_ids
    gen_child = parent + [7, 8] + generated
    reply = _concat(h, parent, [cached_child, gen_child])
    assert reply.success and not reply.complete and "partial" in reply.message
    assert reply.input_ids == (cached_child + [7, 8] + generated)[: len(reply.input_ids)]
    assert len(reply.input_ids) == len(cached_child) + 2 + len(generated) - 1
    assert reply.requested_tokens == len(cached_child) + 2 + len(generated)
    _assert_clean(h)


def test_unrelated_parent_is_not_cached_at_all(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=128)
    reply = _concat(h, [11, 12, 13], [[11, 12, 13, 14]])
    assert reply.success and not reply.complete and reply.input_ids == [] and reply.copied_tokens == 0
    _assert_clean(h)


def test_boundary_retokenization_splits_at_common_prefix(model_path):
    parent = [10, 11, 12, 13]
    children = [[10, 11, 12, 40, 41], [10, 11, 12, 13, 50]]
    seq, origin = concat_plan(parent, children)
    assert seq == [10, 11, 12, 13, 40, 41, 50]
    assert origin[4:] == [(0, 3), (0, 4), (1, 4)]
    h = SchedulerHarness(model_path, max_total_tokens=128)
    for i, ids in enumerate([parent, *children]):
        _cache(h, f"r{i}", ids)
    reply = _concat(h, parent, children)
    assert reply.success and reply.complete and reply.input_ids == seq
    seq_slots = _slots(h, seq)
    _assert_kv_equal(h, seq_slots[4:6], _slots(h, children[0])[3:5])
    _assert_kv_equal(h, seq_slots[6:7], _slots(h, children[1])[4:5])
    _assert_clean(h)


def test_eviction_spares_the_sources(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=64)
    rng = random.Random(3)
    vocab = h.runner.vocab_size()
    parent = _ids(rng, vocab, 10)
    children = [parent + _ids(rng, vocab, 8) for _ in range(2)]
    for i, child in enumerate(children):
        _cache(h, f"c{i}", child)
    for i in range(4):  # fill the rest of the pool with unrelated cached prompts
        _cache(h, f"filler{i}", _ids(rng, vocab, 8))
    cache = h.scheduler.tree_cache
    protected_at_evict = []
    real_evict = cache.evict

    def spy(n: int) -> int:
        protected_at_evict.append(cache.protected_size())
        return real_evict(n)

    cache.evict = spy
    reply = _concat(h, parent, children)
    assert reply.success and reply.complete and reply.copied_tokens == 8, reply.message
    assert protected_at_evict and protected_at_evict[0] >= 10 + 8 + 8, "sources must be locked while evicting"
    seq_slots = _slots(h, reply.input_ids)
    _assert_kv_equal(h, seq_slots[18:], _slots(h, children[1])[10:])
    _assert_clean(h)


def test_not_enough_memory_is_an_error_without_leaks(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=40)
    rng = random.Random(4)
    parent = _ids(rng, h.runner.vocab_size(), 4)
    children = [parent + _ids(rng, h.runner.vocab_size(), 14) for _ in range(2)]
    for i, child in enumerate(children):
        _cache(h, f"c{i}", child)
    reply = _concat(h, parent, children + [children[1]])  # 28 tokens to copy, 4 free
    assert not reply.success and "KV memory" in reply.message
    _assert_clean(h)


def test_concat_while_requests_run(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=256)
    rng = random.Random(5)
    vocab = h.runner.vocab_size()
    parent = _ids(rng, vocab, 12)
    children = [parent + _ids(rng, vocab, 6) for _ in range(3)]
    for i, child in enumerate(children):
        _cache(h, f"c{i}", child)
    h.submit("busy", input_ids=parent + [3, 4], params={"max_new_tokens": 20, "temperature": 0})
    h.step()
    h.step()
    reply = _concat(h, parent, children)
    assert reply.success and reply.complete
    check_pool_invariant(h.runner.allocator, h.scheduler.tree_cache, h.live_reqs())
    h.run_until_idle(after_step=lambda hh: check_pool_invariant(hh.runner.allocator, hh.scheduler.tree_cache,
                                                                 hh.live_reqs()))
    _assert_clean(h)


def test_disabled_radix_cache_is_a_clear_error(model_path):
    h = SchedulerHarness(model_path, max_total_tokens=128, disable_radix_cache=True)
    reply = _concat(h, [1, 2], [[1, 2, 3]])
    assert not reply.success and "disable-radix-cache" in reply.message
    _assert_clean(h)
