"""Inter-token latency is measured per token for every request, streamed or not (issue 15,
item 17): a request of N tokens gives N - 1 observations whose sum is the time from its first
token to its last."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sglang.runtime.managers.io_struct import StrOut, TokenizedGenerateReq
from sglang.runtime.managers.request_state import ReqState
from sglang.runtime.metrics.collector import MetricsCollector
from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

N = 9


def _state() -> ReqState:
    req = TokenizedGenerateReq(rid="r", input_text=None, input_ids=[1, 2, 3], sampling_params=SamplingParams())
    return ReqState(req)


def _out(ids, finished: bool = False) -> StrOut:
    return StrOut(rid="r", text_delta="", new_ids=list(ids), finished_reason={"type": "length"} if finished else None,
                  prompt_tokens=3, completion_tokens=0, cached_tokens=0)


def _itl_count(collector: MetricsCollector) -> float:
    families = text_string_to_metric_families(collector.render().decode())
    return next(s.value for f in families for s in f.samples if s.name == "sglang:inter_token_latency_seconds_count")


@pytest.mark.parametrize("chunks", [[1, N - 1], [1] * N, [1, 3, 3, 2], [3, 6]],
                         ids=["non-streamed", "streamed", "stream-interval", "first-chunk-of-3"])
def test_every_token_after_the_first_gets_one_gap(monkeypatch, chunks):
    state, clock = _state(), iter(float(t) for t in range(1, 100))
    monkeypatch.setattr("sglang.runtime.managers.request_state.time.perf_counter", lambda: next(clock))
    state.created = 0.0
    for i, size in enumerate(chunks):
        start = sum(chunks[:i])
        state.update(_out(range(start, start + size), finished=i == len(chunks) - 1))
    assert len(state.token_times) == N - 1
    assert sum(state.token_times) == pytest.approx(state.last_token_time - state.first_token_time)
    collector = MetricsCollector("m")
    collector.on_finish(state)
    assert _itl_count(collector) == N - 1


def test_non_streamed_requests_send_their_first_token_on_its_own():
    """The scheduler's side of it: without the first token's own message the tokenizer manager
    could not tell decode time from queueing and prefill for a non-streamed request."""
    h = SchedulerHarness(tiny_model_dir("llama"))
    h.submit("whole", input_ids=[5, 6, 7], params={"max_new_tokens": N, "temperature": 0, "ignore_eos": True})
    h.submit("one", input_ids=[5, 6, 8], params={"max_new_tokens": 1, "temperature": 0, "ignore_eos": True})
    results = h.run_until_idle()
    assert results["whole"].messages == 2 and len(results["whole"].output_ids) == N
    assert results["one"].messages == 1
