"""Admission never promises a req_to_token row that is not free.

The table has max_running_requests + 1 rows, but requests outside the running batch hold rows
too: prefill-only requests (max_new_tokens=0, and the shared-prompt prefill of an n > 1 request)
keep theirs until the batch in flight is processed, one step later under overlap scheduling.
Admission used to count only the running batch, so prefill-only requests followed by ordinary
ones made the next extend batch ask for a row that did not exist, and the scheduler process
died (OutOfKVMemory "no free request slot"), taking the server down. Found by
tests/server/test_fuzz_http.py.
"""

from __future__ import annotations

import pytest

from sglang.testing.scheduler_harness import SchedulerHarness

LONG = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
PREFILL_ONLY = {"max_new_tokens": 0}


@pytest.mark.parametrize("overlap", [True, False])
def test_prefill_only_requests_then_ordinary_ones(llama_path: str, overlap: bool) -> None:
    h = SchedulerHarness(llama_path, max_running_requests=2, disable_overlap_schedule=not overlap)
    for i in range(3):
        h.submit(f"prefill-{i}", input_ids=[5 + i, 6, 7], params=PREFILL_ONLY)
    h.step()
    for i in range(3):
        h.submit(f"long-{i}", input_ids=[20 + i, 21, 22, 23], params=LONG)
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    for i in range(3):
        assert results[f"prefill-{i}"].finished_reason["type"] == "length"
        assert len(results[f"long-{i}"].output_ids) == LONG["max_new_tokens"]
    assert h.runner.req_to_token_pool.available_size() == h.runner.req_to_token_pool.size


def test_running_batch_full_and_prefill_only_in_flight(llama_path: str) -> None:
    """Two running requests plus prefill-only ones arriving while they decode."""
    h = SchedulerHarness(llama_path, max_running_requests=2)
    h.submit("a", input_ids=[1, 2, 3], params=LONG)
    h.submit("b", input_ids=[4, 5, 6], params=LONG)
    for _ in range(3):
        h.step()
    for i in range(3):
        h.submit(f"prefill-{i}", input_ids=[7 + i, 8, 9], params=PREFILL_ONLY)
    h.submit("c", input_ids=[20, 21], params=LONG)
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    assert all(len(results[rid].output_ids) == LONG["max_new_tokens"] for rid in ("a", "b", "c"))
