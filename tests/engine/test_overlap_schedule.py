"""Overlap scheduling must not change what requests produce.

The same mixed workload runs with overlap on (default) and off: greedy and seeded sampling,
penalties and min_new_tokens (they need the token still on the device), stop strings and stop
ids, output/input logprobs, prefill-only requests, an n=2 fan-out, a regex request, aborts while
waiting and while running, a tiny pool (retraction) and chunked prefill. A grammar-heavy workload
(JSON schemas and regexes with jump-forward, next to unconstrained requests) checks that sampling
a constrained batch after the previous batch's tokens are accepted gives the same tokens. Requests that are not aborted must give identical tokens; aborted ones must stop with
an abort after a prefix of their full output. The KV pool invariant is checked after every step.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import pytest

import sglang
from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant
from sglang.testing.scheduler_harness import SchedulerHarness

Spec = Tuple[str, List[int], dict, dict]  # rid, input ids, sampling params, request kwargs


def _sampled(seed: int, **extra) -> dict:
    return {"temperature": 0.9, "top_p": 0.9, "top_k": 40, "seed": seed, **extra}


def _waves(llama_prompts: List[List[int]]) -> List[List[Spec]]:
    """Requests grouped by arrival: wave k arrives after k * 3 scheduler steps."""
    p = llama_prompts
    first: List[Spec] = [
        ("greedy-long", p[1], {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}, {}),
        ("greedy-short", p[7], {"max_new_tokens": 1, "temperature": 0}, {}),
        ("sampled", p[2], _sampled(1, max_new_tokens=20), {}),
        ("penalties", p[3], _sampled(2, max_new_tokens=16, frequency_penalty=0.8, presence_penalty=0.5,
                                     repetition_penalty=1.3), {}),
        # Token 300 is favoured until the penalties (which must count the token still on the
        # device) push it away: any miscount changes how often it repeats.
        ("pen-freq", p[6], {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True,
                            "frequency_penalty": 2.0, "logit_bias": {"300": 20.0}}, {}),
        ("pen-rep", p[5], {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True,
                           "repetition_penalty": 2.0, "logit_bias": {"300": 6.0}}, {}),
        ("min-tokens", p[4], _sampled(3, max_new_tokens=12, min_new_tokens=8), {}),
        ("stop-str", p[1], {"max_new_tokens": 24, "temperature": 0, "stop": [" de", "zzz"]}, {}),
        ("logprobs", p[0], _sampled(4, max_new_tokens=10),
         {"return_logprob": True, "top_logprobs_num": 3, "logprob_start_len": 0}),
        ("prefill-only", p[6], {"max_new_tokens": 0}, {}),
        ("abort-running", p[8], {"max_new_tokens": 40, "temperature": 0, "ignore_eos": True}, {"stream": True}),
        ("abort-waiting", p[9], {"max_new_tokens": 40, "temperature": 0}, {}),
    ]
    second: List[Spec] = [
        ("n-prefill", p[10], {"max_new_tokens": 0}, {}),
        ("unseeded", p[11], {"max_new_tokens": 14, "temperature": 1.0}, {}),
        # Its forced text is longer (in tokens) than any batch here, so jump-forward is taken in
        # both modes (a short one would be skipped depending on the batch size at that moment).
        ("regex", p[0], {"max_new_tokens": 80, "temperature": 1.0, "seed": 5,
                         "regex": r"(yes|no), the answer is certainly and without any doubt whatsoever "
                                  r"correct as far as anyone here can tell\."}, {}),
        ("stop-id", p[1], _sampled(6, max_new_tokens=18, stop_token_ids=[854]), {}),
    ]
    third: List[Spec] = [(f"n-{j}", p[10], _sampled(100 + j, max_new_tokens=12), {}) for j in range(2)]
    return [first, second, third]


def _run(llama_path: str, llama_prompts, aborts: bool, waves_fn=None, **overrides) -> Tuple[Dict[str, object], SchedulerHarness]:
    h = SchedulerHarness(llama_path, **overrides)
    waves = (waves_fn or _waves)(llama_prompts)

    def invariant(hh):
        check_pool_invariant(hh.runner.allocator, hh.scheduler.tree_cache, hh.live_reqs())

    step, aborted_running = 0, False
    while waves or h.scheduler.has_work() or h.scheduler.outbox:
        if waves and step % 3 == 0:
            for rid, ids, params, kw in waves.pop(0):
                h.submit(rid, input_ids=ids, params=params, **kw)
            if aborts and step == 0:
                h.abort("abort-waiting")
        running = h.results.get("abort-running")
        if aborts and not aborted_running and running is not None and len(running.output_ids) >= 3:
            h.abort("abort-running")  # while it decodes, whatever the step
            aborted_running = True
        h.step()
        invariant(h)
        step += 1
        assert step < 5000
    assert h.scheduler.check_memory_idle() is None
    return h.results, h


def _compare(ref, got, aborted=()) -> None:
    assert set(ref) == set(got)
    for rid in ref:
        r, g = ref[rid], got[rid]
        assert g.finished_reason is not None, rid
        if rid in aborted:
            assert g.finished_reason["type"] == "abort", rid
            assert g.output_ids == r.output_ids[: len(g.output_ids)], rid
            continue
        assert r.finished_reason["type"] != "abort", (rid, r.finished_reason)
        assert g.output_ids == r.output_ids, rid
        assert g.finished_reason == r.finished_reason, rid
        assert len(g.logprobs) > 0 or not r.logprobs
        _compare_logprobs(r.logprobs, g.logprobs)


def _flat(deltas, field: str) -> list:
    out = []
    for d in deltas:
        out.extend(getattr(d, field) or [])
    return out


def _compare_logprobs(ref, got) -> None:
    for field in ("output_token_logprobs", "input_token_logprobs"):
        a, b = _flat(ref, field), _flat(got, field)
        assert len(a) == len(b), field
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-4), field
    a, b = _flat(ref, "output_top_logprobs"), _flat(got, "output_top_logprobs")
    assert [[t for _, t in row] for row in a] == [[t for _, t in row] for row in b]


CONFIGS = [
    {},
    {"chunked_prefill_size": 7},
    {"max_total_tokens": 150, "max_running_requests": 6},
    {"disable_radix_cache": True, "chunked_prefill_size": 16},
]


@pytest.fixture(scope="module")
def reference(llama_path, llama_prompts):
    """Overlap off, no aborts: every request runs to its natural end."""
    results, _ = _run(llama_path, llama_prompts, aborts=False, disable_overlap_schedule=True)
    return results


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "sync"])
def test_mixed_workload_same_tokens_with_and_without_overlap(llama_path, llama_prompts, reference, overrides, overlap):
    results, h = _run(llama_path, llama_prompts, aborts=True, disable_overlap_schedule=not overlap, **overrides)
    _compare(reference, results, aborted={"abort-running", "abort-waiting"})
    assert results["abort-waiting"].output_ids == []
    assert 3 <= len(results["abort-running"].output_ids) < 40
    if overrides.get("max_total_tokens"):
        assert h.scheduler.stats["num_retractions"] > 0, "the pool was meant to force retraction"


def test_overlap_keeps_a_batch_in_flight(llama_path, llama_prompts):
    """With overlap on, decode steps are launched before the previous step's tokens are read,
    and a request whose in-flight token is its last by length gets no extra step."""
    steps = {}
    for overlap in (True, False):
        h = SchedulerHarness(llama_path, disable_overlap_schedule=not overlap)
        for i, ids in enumerate(llama_prompts[:4]):
            h.submit(str(i), input_ids=ids, params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True})
        in_flight = 0
        while h.scheduler.has_work():
            h.step()
            in_flight += h.scheduler.inflight is not None
        assert (in_flight >= 8) if overlap else (in_flight == 0)
        steps[overlap] = (h.scheduler.stats["prefill_steps"], h.scheduler.stats["decode_steps"])
    assert steps[True] == steps[False] == (1, 7)


SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["name", "age", "tags"]}


def _grammar_waves(llama_prompts: List[List[int]]) -> List[List[Spec]]:
    import json

    p, schema = llama_prompts, json.dumps(SCHEMA)
    first: List[Spec] = [(f"json-{i}", p[i], _sampled(10 + i, max_new_tokens=40, json_schema=schema), {})
                         for i in range(4)]
    first += [
        ("regex-jf", p[4], _sampled(20, max_new_tokens=30, regex=r"(yes|no), the answer is (red|blue|green)\."), {}),
        ("json-pen", p[5], _sampled(21, max_new_tokens=40, json_schema=schema, frequency_penalty=1.0), {}),
        ("json-lp", p[6], _sampled(22, max_new_tokens=30, json_schema=schema),
         {"return_logprob": True, "top_logprobs_num": 2}),
        ("free", p[7], {"max_new_tokens": 30, "temperature": 0, "ignore_eos": True}, {}),
    ]
    second: List[Spec] = [(f"json-late-{i}", p[8 + i], _sampled(30 + i, max_new_tokens=40, json_schema=schema), {})
                          for i in range(2)]
    second.append(("free-late", p[10], _sampled(40, max_new_tokens=20), {}))
    return [first, second]


# Whether a jump-forward pays off depends on the running batch's size at that moment, which the
# two modes see at different times; so jumps are either off or always taken (one running request).
GRAMMAR_CONFIGS = [
    {"disable_jump_forward": True},
    {"max_running_requests": 1},
    {"max_total_tokens": 160, "max_running_requests": 5, "disable_jump_forward": True},
    {"chunked_prefill_size": 9, "max_running_requests": 1},
]


@pytest.mark.parametrize("overrides", GRAMMAR_CONFIGS, ids=["no-jumps", "jumps", "tiny-pool", "chunked-jumps"])
def test_grammar_workload_same_tokens_with_and_without_overlap(llama_path, llama_prompts, overrides):
    ref, _ = _run(llama_path, llama_prompts, aborts=False, waves_fn=_grammar_waves, disable_overlap_schedule=True,
                  **overrides)
    got, h = _run(llama_path, llama_prompts, aborts=False, waves_fn=_grammar_waves, **overrides)
    _compare(ref, got)
    assert (h.scheduler.grammar.stats["jump_forward_events"] > 0) != overrides.get("disable_jump_forward", False)
    assert sum(r.finished_reason["type"] == "stop" for rid, r in ref.items() if rid.startswith("json")) >= 2


def test_grammar_batches_stay_in_flight(llama_path, llama_prompts):
    """With overlap on, a batch of constrained requests is not processed right after its launch:
    its sampling waits for the previous batch's tokens, but the host never idles the device."""
    h = SchedulerHarness(llama_path, disable_jump_forward=True)
    for i, ids in enumerate(llama_prompts[:4]):
        h.submit(str(i), input_ids=ids, params=_sampled(i, max_new_tokens=12, regex="[a-z ]{200}"))
    in_flight = 0
    while h.scheduler.has_work():
        h.step()
        in_flight += h.scheduler.inflight is not None
    assert in_flight >= 10
    assert all(len(h.results[str(i)].output_ids) == 12 for i in range(4))


def test_engine_n2_same_with_and_without_overlap(llama_path):
    params = {"max_new_tokens": 12, "temperature": 0.8, "seed": 7, "n": 2}
    outs = {}
    for disable in (False, True):
        with sglang.Engine(model_path=llama_path, device="cpu", random_seed=0,
                           disable_overlap_schedule=disable) as eng:
            res = eng.generate(["The quick brown fox", "Once upon a time"], params)
            outs[disable] = [r["output_ids"] for r in res]
    assert len(outs[False]) == 4
    assert outs[False] == outs[True]
