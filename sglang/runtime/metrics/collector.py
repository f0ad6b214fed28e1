"""Prometheus metrics of one server, on the server's own CollectorRegistry.

A private registry (never prometheus_client's global one) keeps two servers in one process, or a
server and its tests, from sharing or double-registering series. Names carry the `sglang:` prefix
and a `model_name` label, as upstream's dashboards expect.

Request-level series are fed by the tokenizer manager's listener hooks (`on_finish`, `on_abort`);
the scheduler gauges are refreshed from `get_server_state()` when /metrics is scraped, so nothing
polls the scheduler while nobody is looking.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Deque, Dict, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sglang.runtime.metrics.grammar_metrics import GrammarMetrics
from sglang.runtime.metrics.replica_metrics import ReplicaMetrics
from sglang.runtime.metrics.spec_metrics import SpecMetrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "sglang:"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets span a tiny CPU model (milliseconds) up to large models under load (minutes).
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)
_ITL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
                600.0)
# gen_throughput is averaged over this many seconds of finished requests.
THROUGHPUT_WINDOW_S = 10.0


class MetricsCollector:
    def __init__(self, model_name: str, registry: Optional[CollectorRegistry] = None):
        self.registry = registry or CollectorRegistry()
        self.labels = {"model_name": model_name}
        self._recent: Deque[Tuple[float, int]] = collections.deque()  # (finish time, tokens)
        self._prompt_total = 0  # running sums for cache_hit_rate (counters are write-only)
        self._cached_total = 0
        self._build_counters()
        self._build_histograms()
        self._build_gauges()
        self.grammar = GrammarMetrics(model_name)
        self.registry.register(self.grammar)
        self.replicas = ReplicaMetrics(model_name)
        self.registry.register(self.replicas)
        self.spec = SpecMetrics(model_name)
        self.registry.register(self.spec)

    # ---------------------------------------------------------------- series
    def _counter(self, name: str, doc: str):
        return Counter(PREFIX + name, doc, ["model_name"], registry=self.registry).labels(**self.labels)

    def _gauge(self, name: str, doc: str):
        return Gauge(PREFIX + name, doc, ["model_name"], registry=self.registry).labels(**self.labels)

    def _histogram(self, name: str, doc: str, buckets):
        return Histogram(PREFIX + name, doc, ["model_name"], buckets=buckets,
                         registry=self.registry).labels(**self.labels)

    def _build_counters(self) -> None:
        # prometheus_client appends "_total" to counter names on exposition.
        self.prompt_tokens = self._counter("prompt_tokens", "Prompt tokens processed (finished requests).")
        self.generation_tokens = self._counter("generation_tokens", "Tokens generated (finished requests).")
        self.cached_tokens = self._counter("cached_tokens", "Prompt tokens served from the prefix cache.")
        self.num_requests = self._counter("num_requests", "Requests finished or aborted.")
        self.num_aborted = self._counter("num_aborted_requests", "Requests aborted (by the client, a "
                                         "disconnect, or the scheduler).")

    def _build_histograms(self) -> None:
        self.ttft = self._histogram("time_to_first_token_seconds", "Time to first token.", _TTFT_BUCKETS)
        # One observation per output token after a request's first, streamed or not; tokens that
        # arrive together share the gap since the previous ones (see ReqState._time_tokens).
        self.itl = self._histogram("inter_token_latency_seconds", "Time between output tokens (per token).",
                                   _ITL_BUCKETS)
        self.e2e = self._histogram("e2e_request_latency_seconds", "Request latency, arrival to finish.",
                                   _E2E_BUCKETS)

    def _build_gauges(self) -> None:
        self.num_running = self._gauge("num_running_reqs", "Requests in the running batch.")
        self.num_queue = self._gauge("num_queue_reqs", "Requests waiting in the scheduler queue.")
        self.token_usage = self._gauge("token_usage", "Fraction of the KV pool held by live requests.")
        self.cache_hit_rate = self._gauge("cache_hit_rate", "Cached prompt tokens / prompt tokens, "
                                          "since start.")
        self.gen_throughput = self._gauge("gen_throughput", "Generated tokens per second over the last "
                                          f"{THROUGHPUT_WINDOW_S:.0f} s of finished requests.")

    # ---------------------------------------------------------------- listener hooks
    def on_finish(self, state: Any) -> None:
        """Called by the tokenizer manager when a request finishes (ReqState)."""
        now = time.perf_counter()
        self.num_requests.inc()
        self.prompt_tokens.inc(state.prompt_tokens)
        self.generation_tokens.inc(state.completion_tokens)
        self.cached_tokens.inc(state.cached_tokens)
        self._prompt_total += state.prompt_tokens
        self._cached_total += state.cached_tokens
        reason = state.finished_reason or {}
        if reason.get("type") == "abort":
            self.num_aborted.inc()
        if state.first_token_time is not None:
            self.ttft.observe(state.first_token_time - state.created)
        for gap in state.token_times:
            self.itl.observe(gap)
        self.e2e.observe(now - state.created)
        self._recent.append((now, state.completion_tokens))

    def on_abort(self, state: Any) -> None:
        """Called when a request is dropped before finishing (client gone, cancelled)."""
        self.num_requests.inc()
        self.num_aborted.inc()
        self.e2e.observe(time.perf_counter() - state.created)

    # ---------------------------------------------------------------- scrape
    def update_server_state(self, state: Dict[str, Any]) -> None:
        self.grammar.update(state)
        self.replicas.update(state)
        self.spec.update(state)
        self.num_running.set(state.get("num_running_reqs", 0))
        self.num_queue.set(state.get("num_queue_reqs", 0))
        self.token_usage.set(state.get("token_usage", 0.0))
        rate = self._cached_total / self._prompt_total if self._prompt_total else 0.0
        self.cache_hit_rate.set(rate)
        self.gen_throughput.set(self._throughput(time.perf_counter()))

    def _throughput(self, now: float) -> float:
        while self._recent and now - self._recent[0][0] > THROUGHPUT_WINDOW_S:
            self._recent.popleft()
        return sum(tokens for _, tokens in self._recent) / THROUGHPUT_WINDOW_S

    def render(self) -> bytes:
        return generate_latest(self.registry)
