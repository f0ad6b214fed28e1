"""Greedy results must not depend on how the scheduler batches, caches, chunks or retracts."""

from __future__ import annotations

import pytest

from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant
from sglang.testing.hf_reference import hf_greedy
from sglang.testing.scheduler_harness import SchedulerHarness

NEW_TOKENS = 16


def _greedy(llama_path, llama_prompts, check_invariant=True, **overrides):
    h = SchedulerHarness(llama_path, **overrides)
    for i, ids in enumerate(llama_prompts):
        h.submit(str(i), input_ids=ids, params={"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True})

    def invariant(hh):
        check_pool_invariant(hh.runner.allocator, hh.scheduler.tree_cache, hh.live_reqs())

    results = h.run_until_idle(after_step=invariant if check_invariant else None)
    assert h.scheduler.check_memory_idle() is None
    return [results[str(i)].output_ids for i in range(len(llama_prompts))], h


@pytest.fixture(scope="module")
def reference(llama_path, llama_prompts):
    outs, _ = _greedy(llama_path, llama_prompts)
    return outs


def test_batched_greedy_equals_transformers_one_at_a_time(llama_path, llama_prompts, reference):
    assert reference == hf_greedy(llama_path, llama_prompts, NEW_TOKENS)


@pytest.mark.parametrize("overrides", [
    {"disable_radix_cache": True},
    {"chunked_prefill_size": 7},
    {"chunked_prefill_size": 7, "disable_radix_cache": True},
    {"max_prefill_tokens": 20},
    {"max_running_requests": 3},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_greedy_unchanged_under_scheduler_options(llama_path, llama_prompts, reference, overrides):
    outs, _ = _greedy(llama_path, llama_prompts, **overrides)
    assert outs == reference


@pytest.mark.parametrize("policy", ["fcfs", "lpm", "dfs-weight", "lof", "random"])
def test_greedy_unchanged_under_each_policy(llama_path, llama_prompts, reference, policy):
    outs, _ = _greedy(llama_path, llama_prompts, schedule_policy=policy)
    assert outs == reference


def test_retraction_happens_and_keeps_greedy_results(llama_path, llama_prompts, reference):
    longest = max(len(p) for p in llama_prompts) + NEW_TOKENS
    outs, h = _greedy(llama_path, llama_prompts, max_total_tokens=longest + 24)
    assert h.scheduler.stats["num_retractions"] > 0, "the pool was meant to be small enough to force retraction"
    assert outs == reference


def test_repeated_prompt_hits_the_cache(llama_path, llama_prompts):
    h = SchedulerHarness(llama_path)
    long_prompt = sum(llama_prompts[:4], [])
    for rid in ("first", "second"):
        h.submit(rid, input_ids=long_prompt, params={"max_new_tokens": 4, "temperature": 0})
        h.run_until_idle()
    assert h.results["first"].cached_tokens == 0
    assert h.results["second"].cached_tokens >= len(long_prompt) - 1
    assert h.results["first"].output_ids == h.results["second"].output_ids


def test_simultaneous_requests_sharing_a_prefix_compute_it_once(llama_path):
    """Requests that arrive together and share an uncached prefix: one computes it, the others
    are deferred a batch and reuse it from the radix cache."""
    import random

    rng = random.Random(0)
    groups = [[rng.randrange(900) for _ in range(120)] for _ in range(3)]
    computed = {}
    for disable in (False, True):
        h = SchedulerHarness(llama_path, disable_radix_cache=disable)
        for g, prefix in enumerate(groups):
            for j in range(6):
                h.submit(f"{g}-{j}", input_ids=prefix + [rng.randrange(900) for _ in range(8)],
                         params={"max_new_tokens": 2, "temperature": 0})
        h.run_until_idle()
        computed[disable] = h.scheduler.stats["prefill_tokens"]
    total = 3 * 6 * 128
    assert computed[True] == total
    assert computed[False] <= 3 * 128 + 3 * 5 * 8 + 3 * 5 * 32  # each prefix once (up to a partial block)
