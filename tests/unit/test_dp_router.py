"""The data-parallel replica router (managers/dp_router.py): pure bookkeeping, no processes."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers.dp_router import PrefixRecord, ReplicaRouter, merge_replica_states


def _prompt(rng: random.Random, prefix, suffix_len: int = 16):
    return list(prefix) + [rng.randrange(1000, 2000) for _ in range(suffix_len)]


def _grouped_stream(num_groups=4, per_group=8, prefix_len=128, seed=0):
    rng = random.Random(seed)
    prefixes = [[rng.randrange(1000) for _ in range(prefix_len)] for _ in range(num_groups)]
    stream = [(g, _prompt(rng, prefixes[g])) for g in range(num_groups) for _ in range(per_group)]
    rng.shuffle(stream)
    return stream


def _reuse(router: ReplicaRouter, stream) -> tuple:
    """Send the stream (nothing finishes); return (fraction of prompt tokens an exact prefix
    cache on the chosen replica would have held, replicas each group landed on)."""
    sent = [[] for _ in range(router.num_replicas)]
    reused = total = 0
    landed = {}
    for group, ids in stream:
        r = router.choose(ids).replica
        reused += max((_common(ids, prev) for prev in sent[r]), default=0)
        total += len(ids)
        sent[r].append(ids)
        landed.setdefault(group, set()).add(r)
    return reused / total, landed


def _common(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_round_robin_cycles():
    router = ReplicaRouter(3, "round_robin")
    assert [router.choose([1, 2, 3]).replica for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_shortest_queue_picks_least_loaded():
    router = ReplicaRouter(3, "shortest_queue")
    picks = [router.choose([1]).replica for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]
    router.finish(1)
    assert router.choose([1]).replica == 1  # the only one with a free slot
    router.finish(2)
    router.finish(2)  # extra finishes never go negative
    assert router.loads == [1, 1, 0]
    assert router.choose([1]).replica == 2


def test_cache_aware_keeps_prefix_groups_together_and_beats_round_robin():
    stream = _grouped_stream()
    aware_hit, aware_landed = _reuse(ReplicaRouter(4, "cache_aware"), stream)
    rr_hit, rr_landed = _reuse(ReplicaRouter(4, "round_robin"), stream)
    print(f"prefix reuse: cache_aware {aware_hit:.3f}, round_robin {rr_hit:.3f}")
    assert all(len(replicas) == 1 for replicas in aware_landed.values())
    assert len(set().union(*aware_landed.values())) == 4  # the 4 groups spread over the 4 replicas
    assert any(len(replicas) > 1 for replicas in rr_landed.values())
    # 4 groups x 8 requests of 128 + 16 tokens: only each group's first request misses.
    assert aware_hit == pytest.approx(28 * 128 / (32 * 144))
    assert aware_hit > rr_hit + 0.2


def test_cache_aware_short_match_goes_to_least_loaded():
    router = ReplicaRouter(2, "cache_aware", block_size=4, min_prefix_tokens=8, min_prefix_fraction=0.5)
    first = router.choose(list(range(32))).replica
    # Shares only one block (4 tokens) with the first prompt: below both thresholds.
    other = router.choose(list(range(4)) + list(range(100, 128))).replica
    assert other != first
    # Shares 24 of 28 tokens: follows the cache even though that replica is busier.
    router.choose(list(range(200, 232)))  # loads now 2 / 1 or 1 / 2
    follow = router.choose(list(range(24)) + [900, 901, 902, 903])
    assert follow.replica == first and follow.matched_tokens == 24


def test_cache_aware_overloaded_replica_is_skipped():
    router = ReplicaRouter(2, "cache_aware", block_size=4, min_prefix_tokens=4, balance_abs_threshold=2)
    prompt = list(range(16))
    picks = [router.choose(prompt).replica for _ in range(4)]
    assert picks[:3] == [picks[0]] * 3  # until it is more than 2 ahead of the idle replica
    assert picks[3] != picks[0]


def test_flush_forgets_prefixes():
    router = ReplicaRouter(2, "cache_aware", block_size=4, min_prefix_tokens=4)
    router.choose(list(range(16)))
    router.clear_cache()
    assert router.choose(list(range(16))).matched_tokens == 0


def test_record_is_bounded_and_evicts_tails_first():
    record = PrefixRecord(block_size=2, max_blocks=4)
    a = record.block_keys([1, 2, 3, 4, 5, 6])
    record.insert(a)
    b = record.block_keys([9, 9, 8, 8])
    record.insert(b)
    assert len(record) == 4
    assert record.match(b) == 4
    assert record.match(a) == 4  # a's last block went first; its root survives


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="load_balance_method"):
        ReplicaRouter(2, "random")
    with pytest.raises(ValueError, match="at least one replica"):
        ReplicaRouter(0)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["round_robin", "shortest_queue", "cache_aware"]), st.integers(1, 5),
       st.lists(st.tuples(st.lists(st.integers(0, 3), max_size=40), st.booleans()), max_size=60))
def test_loads_track_in_flight_requests(method, replicas, ops):
    router = ReplicaRouter(replicas, method, block_size=4, min_prefix_tokens=4, max_blocks_per_replica=8)
    in_flight = []
    for ids, finish_one in ops:
        d = router.choose(ids)
        assert 0 <= d.replica < replicas and 0 <= d.matched_tokens <= len(ids)
        in_flight.append(d.replica)
        if finish_one and in_flight:
            router.finish(in_flight.pop(0))
        assert sum(router.loads) == len(in_flight)
        assert all(len(record) <= 8 for record in router.records)


def test_merge_replica_states():
    a = {"num_running_reqs": 2, "token_usage": 0.5, "context_length": 64, "free_kv_tokens": 10, "x": "a"}
    b = {"num_running_reqs": 1, "token_usage": 0.1, "context_length": 64, "free_kv_tokens": 30, "x": "b"}
    assert merge_replica_states([a]) is a
    merged = merge_replica_states([a, b])
    assert merged["num_running_reqs"] == 3 and merged["free_kv_tokens"] == 40
    assert merged["token_usage"] == pytest.approx(0.3) and merged["context_length"] == 64
    assert [r["replica"] for r in merged["replicas"]] == [0, 1]
    assert merged["replicas"][1]["x"] == "b"
