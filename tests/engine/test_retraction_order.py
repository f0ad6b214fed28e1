"""Under KV pressure the least-advanced running request is retracted first (ties: the one holding
more memory), and a retracted request still finishes with its unpressured output.

Which request goes back never changes greedy outputs, so these tests read the retractions the
harness recorded. The pool sizes were chosen so that exactly one running request is retracted.
"""

from __future__ import annotations

import random

import pytest

from sglang.testing.scheduler_harness import SchedulerHarness

GREEDY = {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}


def _prompts(lengths: dict) -> dict:
    rng = random.Random(0)
    return {rid: [rng.randrange(3, 900) for _ in range(n)] for rid, n in lengths.items()}


def _outputs(h: SchedulerHarness) -> dict:
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    assert all(len(r.output_ids) == GREEDY["max_new_tokens"] for r in results.values())
    return {rid: r.output_ids for rid, r in results.items()}


def _staggered(llama_path: str, prompts: dict, **overrides) -> SchedulerHarness:
    """A, B, C arrive four steps apart, so when memory runs out A is furthest and C least along."""
    h = SchedulerHarness(llama_path, **overrides)
    for rid in ("A", "B", "C"):
        h.submit(rid, input_ids=prompts[rid], params=GREEDY)
        for _ in range(4):
            h.step()
    return h


def _decode_retractions(h: SchedulerHarness) -> list:
    return [r for r in h.retractions if not r.chunk_paused]


@pytest.mark.parametrize("disable_overlap", [False, True], ids=["overlap", "no-overlap"])
def test_least_advanced_request_is_retracted(llama_path, disable_overlap):
    prompts = _prompts({"A": 10, "B": 10, "C": 10})
    h = _staggered(llama_path, prompts, max_total_tokens=72, disable_overlap_schedule=disable_overlap)
    outs = _outputs(h)
    retracted = _decode_retractions(h)
    assert [r.rid for r in retracted] == ["C"], h.retractions
    progress = retracted[0].progress
    assert set(progress) == {"A", "B", "C"} and progress["C"] < progress["B"] < progress["A"]
    unpressured = _staggered(llama_path, prompts, disable_overlap_schedule=disable_overlap)
    assert outs == _outputs(unpressured) and unpressured.retractions == []


def test_on_equal_progress_the_request_holding_most_memory_goes_first(llama_path):
    prompts = _prompts({"A": 6, "B": 20, "C": 12})
    outs = {}
    for size in (90, None):
        h = SchedulerHarness(llama_path, max_total_tokens=size)
        for rid, ids in prompts.items():
            h.submit(rid, input_ids=ids, params=GREEDY)
        outs[size] = _outputs(h)
        if size is not None:
            retracted = _decode_retractions(h)
            assert [r.rid for r in retracted] == ["B"], h.retractions
            progress = retracted[0].progress
            assert set(progress) == {"A", "B", "C"} and len(set(progress.values())) == 1
        else:
            assert h.retractions == []
    assert outs[90] == outs[None]
