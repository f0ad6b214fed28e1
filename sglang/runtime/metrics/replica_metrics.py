"""Per-replica scheduler gauges under data parallelism (`--dp-size > 1`).

The server-wide gauges (`sglang:num_running_reqs`, ...) hold the replicas' sum (token usage: the
mean); these families give each replica's own figure with a `dp_rank` label, read from the
"replicas" list of the merged server state at scrape time. Nothing is exported with one replica.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "sglang:"
# (state key, metric name, help)
_GAUGES = (
    ("num_running_reqs", "replica_num_running_reqs", "Requests in one data-parallel replica's running batch."),
    ("num_queue_reqs", "replica_num_queue_reqs", "Requests waiting in one data-parallel replica's queue."),
    ("token_usage", "replica_token_usage", "Fraction of one data-parallel replica's KV pool held by live requests."),
    ("max_total_num_tokens", "replica_max_total_num_tokens", "KV capacity of one data-parallel replica, in tokens."),
)


class ReplicaMetrics(Collector):
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.replicas: List[Dict[str, Any]] = []

    def update(self, state: Dict[str, Any]) -> None:
        self.replicas = [dict(replica) for replica in state.get("replicas", [])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.replicas:
            return
        for key, name, doc in _GAUGES:
            family = GaugeMetricFamily(PREFIX + name, doc, labels=["model_name", "dp_rank"])
            for rank, replica in enumerate(self.replicas):
                family.add_metric([self.model_name, str(replica.get("replica", rank))], float(replica.get(key, 0)))
            yield family
