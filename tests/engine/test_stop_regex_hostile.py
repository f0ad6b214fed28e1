"""A stop_regex that backtracks catastrophically ends its own request with an error; the scheduler
keeps serving the others. It used to hang the scheduler loop (the search runs after every token,
holding the GIL), stalling every request until the watchdog killed the server. Found by
tests/server/test_fuzz_http.py.

The harness runs in a child process, so that a hang fails the test instead of freezing it.
"""

from __future__ import annotations

import multiprocessing
from typing import Dict

from sglang.testing.scheduler_harness import SchedulerHarness

COMMA = 11  # the tiny tokenizer's ","
# Forced to output commas, against which this pattern backtracks exponentially (never matches).
HOSTILE = {"max_new_tokens": 40, "temperature": 0, "ignore_eos": True, "logit_bias": {str(COMMA): 100.0},
           "stop_regex": r"(.*?,){30}\x00"}
ORDINARY = {"max_new_tokens": 40, "temperature": 0, "ignore_eos": True}
HANG_LIMIT_S = 120  # far above the real time (seconds); the old code never returned


def _serve_both(model_path: str) -> Dict[str, tuple]:
    h = SchedulerHarness(model_path)
    h.submit("hostile", input_ids=[5, 6, 7], params=HOSTILE)
    h.submit("ordinary", input_ids=[8, 9, 10], params=ORDINARY)
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    return {rid: (r.output_ids, r.finished_reason) for rid, r in results.items()}


def test_catastrophic_stop_regex_ends_only_its_request(llama_path: str) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pending = pool.apply_async(_serve_both, (llama_path,))
        try:
            results = pending.get(HANG_LIMIT_S)
        except multiprocessing.TimeoutError:
            raise AssertionError("the scheduler is stuck in a stop_regex search") from None
    hostile_ids, hostile_reason = results["hostile"]
    assert hostile_reason["type"] == "abort" and "stop_regex" in hostile_reason["message"], hostile_reason
    assert hostile_reason["status_code"] == 400
    assert set(hostile_ids) == {COMMA} and len(hostile_ids) < HOSTILE["max_new_tokens"]
    assert len(results["ordinary"][0]) == ORDINARY["max_new_tokens"]
