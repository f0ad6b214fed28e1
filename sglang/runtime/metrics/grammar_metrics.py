"""Structured-generation metrics, read from the scheduler's state at scrape time.

The scheduler process owns the grammar manager, so its figures arrive as plain numbers with the
server state; this collector re-exports them as Prometheus families (a histogram for compile time,
counters for compiles, cache hits, aborted grammars and jump-forward tokens).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

PREFIX = "sglang:"


class GrammarMetrics(Collector):
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.state: Dict[str, Any] = {}

    def update(self, state: Dict[str, Any]) -> None:
        self.state = dict(state)

    def _counter(self, name: str, doc: str, key: str) -> CounterMetricFamily:
        family = CounterMetricFamily(PREFIX + name, doc, labels=["model_name"])
        family.add_metric([self.model_name], float(self.state.get(key, 0)))
        return family

    def collect(self) -> Iterator:
        yield self._counter("grammar_compiles", "Grammars compiled", "grammar_compiles")
        yield self._counter("grammar_cache_hits", "Grammar requests served from the compile cache",
                            "grammar_cache_hits")
        yield self._counter("aborted_grammars", "Requests aborted because their grammar was invalid",
                            "aborted_grammars")
        yield self._counter("jump_forward_tokens", "Output tokens added by jump-forward decoding",
                            "jump_forward_tokens")
        yield self._histogram()

    def _histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(PREFIX + "grammar_compile_time_seconds", "Grammar compile time",
                                       labels=["model_name"])
        per_bucket = self.state.get("grammar_compile_time_buckets") or {}
        cumulative, buckets = 0, []
        for bound, count in sorted(per_bucket.items(), key=lambda kv: float(kv[0])):
            cumulative += count  # the scheduler sends per-bucket counts; Prometheus wants cumulative
            buckets.append((_bound(bound), cumulative))
        if not buckets or buckets[-1][0] != "+Inf":
            buckets.append(("+Inf", cumulative))
        family.add_metric([self.model_name], buckets, float(self.state.get("grammar_compile_time_sum_s", 0.0)))
        return family


def _bound(value: Any) -> str:
    return "+Inf" if float(value) == float("inf") else repr(float(value))
