"""Data parallelism end to end: Engine(dp_size=2) on the CPU, two independent replicas behind one
tokenizer manager (docs/architecture.md, Data parallelism). Greedy outputs equal dp_size=1; with
the cache_aware router, requests sharing a long prefix land where it is cached (cached_tokens far
above round_robin's); a killed replica fails the next call within seconds.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir

PROMPTS = [
    "The capital of France is a city that",
    "Once upon a time, in a land far away, there lived",
    "The capital of France is a city that many people",
    "Numbers: one two three four five six seven eight nine ten eleven twelve",
]
GREEDY = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
SHORT = {"max_new_tokens": 1, "temperature": 0}
TOPICS = ["rivers", "mountains", "old ships", "desert plants"]


def _prefix_stream() -> list:
    """4 groups of 3 prompts, each group sharing a long prefix, in a shuffled order."""
    prefixes = [f"Here is a long report about {t}: " + " ".join(f"{t} fact {i} is noted." for i in range(8))
                for t in TOPICS]
    stream = [prefixes[g] + f" Question {k} about {TOPICS[g]}?" for g in range(4) for k in range(3)]
    random.Random(0).shuffle(stream)
    return stream


def _engine(dp_size: int, method: str = "cache_aware") -> sglang.Engine:
    return sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", dp_size=dp_size,
                         load_balance_method=method)


def _workload(dp_size: int, method: str) -> dict:
    with _engine(dp_size, method) as engine:
        outs = engine.generate(PROMPTS, GREEDY)
        engine.flush_cache()  # the prefix stream starts from empty caches
        cached = [engine.generate(p, SHORT)["meta_info"]["cached_tokens"] for p in _prefix_stream()]
        info = engine.get_server_info()
    return {"outs": outs, "cached": sum(cached), "info": info}


@pytest.fixture(scope="module")
def runs() -> dict:
    return {key: _workload(*key) for key in [(1, "cache_aware"), (2, "cache_aware"), (2, "round_robin")]}


def test_dp2_equals_dp1(runs):
    ref = runs[(1, "cache_aware")]["outs"]
    for key in [(2, "cache_aware"), (2, "round_robin")]:
        assert [o["output_ids"] for o in runs[key]["outs"]] == [o["output_ids"] for o in ref]
        assert [o["text"] for o in runs[key]["outs"]] == [o["text"] for o in ref]


def test_dp2_of_tp2_equals_dp1(runs):
    """Two replicas of two tensor-parallel ranks each (4 scheduler processes, one rendezvous per
    replica) give the single process's greedy outputs."""
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", dp_size=2, tp_size=2) as engine:
        outs = engine.generate(PROMPTS, GREEDY)
        replicas = engine.get_server_info()["replicas"]
    assert [o["output_ids"] for o in outs] == [o["output_ids"] for o in runs[(1, "cache_aware")]["outs"]]
    assert len(replicas) == 2


def test_cache_aware_reuses_prefixes_more_than_round_robin(runs):
    aware, rr = runs[(2, "cache_aware")]["cached"], runs[(2, "round_robin")]["cached"]
    single = runs[(1, "cache_aware")]["cached"]
    print(f"cached prompt tokens over the prefix stream: dp1 {single}, dp2 cache_aware {aware}, "
          f"dp2 round_robin {rr}")
    assert aware >= 0.95 * single  # each group stays on one replica: nearly as good as one cache
    assert aware > 1.3 * rr


def test_server_info_reports_each_replica(runs):
    info = runs[(2, "cache_aware")]["info"]
    assert [r["replica"] for r in info["replicas"]] == [0, 1]
    per_replica = [r["max_total_num_tokens"] for r in info["replicas"]]
    assert info["max_total_num_tokens"] == sum(per_replica)
    assert "replicas" not in runs[(1, "cache_aware")]["info"]


def test_killing_a_replica_fails_the_engine_quickly():
    engine = _engine(2, "round_robin")
    try:
        # n > 1 on replica 0: the samples go where their prompt was prefilled, though round robin alternates.
        prompt = "A prompt long enough to be worth sharing between the samples of one request"
        samples = engine.generate(prompt, {"max_new_tokens": 2, "n": 3, "temperature": 1.0})
        assert all(s["meta_info"]["cached_tokens"] > 0 for s in samples)
        assert engine.tokenizer_manager.router.loads == [0, 0] and not engine.tokenizer_manager._pinned
        os.kill(dict(engine._procs)["scheduler DP1"].pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="scheduler DP1"):
            engine.generate("Hello there", {"max_new_tokens": 8})  # round robin: replica 1
        assert time.monotonic() - start < 5
        with pytest.raises(RuntimeError, match="scheduler DP1"):
            engine.generate("Hello", {"max_new_tokens": 2})  # replica 0 lives, the engine is stopped
    finally:
        engine.shutdown()
    assert all(not proc.is_alive() for _, proc in engine._procs)
