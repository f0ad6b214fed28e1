"""--max-queued-requests counts requests that wait beyond the running slots (issue 15, item 20):
requests that arrive together, before a step has moved any into the running batch, are not all
"queued" — as many as there are free running slots are about to run."""

from __future__ import annotations

import pytest

from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

RUNNING, QUEUED, ARRIVING = 2, 3, 12
PARAMS = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def harness_factory():
    def make() -> SchedulerHarness:
        return SchedulerHarness(tiny_model_dir("llama"), max_running_requests=RUNNING,
                                max_queued_requests=QUEUED)
    return make


def _rejected(h: SchedulerHarness) -> list:
    return [rid for rid, res in h.results.items()
            if res.finished_reason and res.finished_reason.get("status_code") == 503]


def test_simultaneous_arrivals_fill_running_slots_then_the_queue(harness_factory):
    h = harness_factory()
    for i in range(ARRIVING):
        h.submit(f"r{i}", input_ids=[5 + i, 6, 7, 8], params=PARAMS)  # all before any step
    h.step()
    rejected = _rejected(h)
    assert sorted(rejected) == sorted(f"r{i}" for i in range(RUNNING + QUEUED, ARRIVING))
    message = h.results[rejected[0]].finished_reason["message"]
    assert "--max-queued-requests" in message and str(QUEUED) in message, message
    results = h.run_until_idle()
    served = [rid for rid, res in results.items() if rid not in rejected]
    assert len(served) == RUNNING + QUEUED
    assert all(len(results[rid].output_ids) == PARAMS["max_new_tokens"] for rid in served)
    assert h.scheduler.check_memory_idle() is None


def test_queue_limit_still_holds_once_the_running_slots_are_taken(harness_factory):
    h = harness_factory()
    for i in range(RUNNING):
        h.submit(f"run{i}", input_ids=[9, 10, 11 + i], params={**PARAMS, "max_new_tokens": 50})
    h.step()
    h.step()
    assert len(h.scheduler.running) == RUNNING
    for i in range(QUEUED + 2):
        h.submit(f"wait{i}", input_ids=[12, 13, 14 + i], params=PARAMS)
    h.step()
    assert sorted(_rejected(h)) == [f"wait{QUEUED}", f"wait{QUEUED + 1}"]
    h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
