"""Speculative-decoding metrics, read from the scheduler's state at scrape time.

The spec worker counts, per (request, verify pass), how many tokens the pass emitted (accepted
drafts + the correction / bonus token); this collector exports those counts as a Prometheus
histogram of acceptance lengths, plus counters of verify passes, drafted and accepted tokens.
Nothing is exported when the server runs without --speculative-algorithm.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

PREFIX = "sglang:"
_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)


class SpecMetrics(Collector):
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.state: Dict[str, Any] = {}

    def update(self, state: Dict[str, Any]) -> None:
        self.state = dict(state)

    def collect(self) -> Iterator:
        if "spec_verify_passes" not in self.state:
            return
        for name, doc, key in (
            ("spec_verify_passes", "Speculative verify passes (one extend pass over drafts)", "spec_verify_passes"),
            ("spec_draft_tokens", "Draft tokens proposed for verification", "spec_draft_tokens"),
            ("spec_accepted_tokens", "Draft tokens accepted by verification", "spec_accepted_tokens"),
        ):
            family = CounterMetricFamily(PREFIX + name, doc, labels=["model_name"])
            family.add_metric([self.model_name], float(self.state.get(key, 0)))
            yield family
        yield self._histogram()

    def _histogram(self) -> HistogramMetricFamily:
        counts = {int(k): int(v) for k, v in (self.state.get("spec_accept_length_counts") or {}).items()}
        family = HistogramMetricFamily(PREFIX + "spec_accept_length",
                                       "Tokens emitted per request per verify pass (accepted drafts + 1)",
                                       labels=["model_name"])
        buckets = [(repr(float(b)), sum(c for n, c in counts.items() if n <= b)) for b in _BUCKETS]
        buckets.append(("+Inf", sum(counts.values())))
        family.add_metric([self.model_name], buckets, float(sum(n * c for n, c in counts.items())))
        return family
