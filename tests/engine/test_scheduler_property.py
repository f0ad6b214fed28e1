"""Thousands of random requests through a tiny pool: nothing leaks, nothing double-frees.

Random lengths, shared prefixes, random sampling parameters, regex/JSON-schema requests (deferred
sampling, jump-forward), aborts at any stage (waiting, chunked, running), retraction under a tiny
KV pool. The pool invariant
free + evictable + locked + in-flight == total is checked after every scheduler step, and at the
end every slot is free or held by the (unlocked) radix cache.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

REQUESTS_PER_EXAMPLE = 500
EXAMPLES = 4  # 4 x 500 = 2000 requests


def _random_params(rng: random.Random) -> dict:
    params = {"max_new_tokens": rng.randint(0, 10)}
    if rng.random() < 0.5:
        params["temperature"] = 0
    else:
        params.update(temperature=rng.uniform(0.1, 2.0), top_p=rng.uniform(0.1, 1.0),
                      top_k=rng.choice([-1, 1, 5, 50]), min_p=rng.choice([0.0, 0.05]))
    if rng.random() < 0.2:
        params.update(frequency_penalty=rng.uniform(-1, 1), presence_penalty=rng.uniform(-1, 1),
                      repetition_penalty=rng.uniform(0.8, 1.5))
    if rng.random() < 0.2:
        params["min_new_tokens"] = rng.randint(0, params["max_new_tokens"])
    if rng.random() < 0.2:
        params["stop"] = [rng.choice(["a", "the", ".", "\n"])]
    if rng.random() < 0.2:
        params["seed"] = rng.randint(0, 100)
    if rng.random() < 0.15:  # grammar batches: deferred sampling, jump-forward re-prefills
        kind, spec = rng.choice(GRAMMARS)
        params[kind] = spec
        params.pop("stop", None)
    return params


GRAMMARS = [
    ("regex", r"(yes|no)\. that is all\. [a-z]{2}"),
    ("regex", r"[0-9]{2,5}"),
    ("json_schema", '{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "yz"]}}, '
                    '"required": ["a", "b"]}'),
]


@pytest.fixture(scope="module")
def model_path():
    return tiny_model_dir("llama")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), radix=st.booleans(), chunk=st.sampled_from([5, 16, 2048]))
def test_random_traffic_keeps_the_pool_consistent(model_path, seed, radix, chunk):
    rng = random.Random(seed)
    h = SchedulerHarness(model_path, max_total_tokens=160, max_running_requests=12, chunked_prefill_size=chunk,
                         disable_radix_cache=not radix, schedule_policy=rng.choice(["fcfs", "lpm", "dfs-weight"]))
    vocab = h.runner.vocab_size()
    prefixes = [[rng.randrange(vocab) for _ in range(rng.randint(1, 40))] for _ in range(6)]
    submitted, aborted, params_of = [], set(), {}

    def invariant(hh):
        check_pool_invariant(hh.runner.allocator, hh.scheduler.tree_cache, hh.live_reqs())

    for i in range(REQUESTS_PER_EXAMPLE):
        prefix = rng.choice(prefixes) if rng.random() < 0.7 else []
        ids = prefix + [rng.randrange(vocab) for _ in range(rng.randint(1 if not prefix else 0, 30))]
        rid = f"r{i}"
        params_of[rid] = _random_params(rng)
        h.submit(rid, input_ids=ids, params=params_of[rid])
        submitted.append(rid)
        for _ in range(rng.randint(0, 3)):
            h.step()
            invariant(h)
        if rng.random() < 0.1:
            victim = rng.choice(submitted)
            h.abort(victim)
            aborted.add(victim)
    h.run_until_idle(after_step=invariant)

    assert h.scheduler.check_memory_idle() is None
    assert all(h.results[rid].finished_reason is not None for rid in submitted), "every request must finish"
    for rid in submitted:
        res, limit = h.results[rid], params_of[rid]["max_new_tokens"]
        assert len(res.output_ids) <= limit
        if res.finished_reason["type"] == "length":
            assert len(res.output_ids) == limit
        elif res.finished_reason["type"] == "abort":
            assert rid in aborted
    h.scheduler.tree_cache.reset()
    assert h.runner.allocator.available_size() == h.runner.max_total_num_tokens
