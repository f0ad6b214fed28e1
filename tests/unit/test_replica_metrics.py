"""Per-replica gauges on /metrics under data parallelism, and none with one replica."""

from __future__ import annotations

from sglang.runtime.metrics.collector import MetricsCollector

REPLICAS = [{"replica": 0, "num_running_reqs": 1, "num_queue_reqs": 4, "token_usage": 0.25, "max_total_num_tokens": 10},
            {"replica": 1, "num_running_reqs": 2, "num_queue_reqs": 0, "token_usage": 0.5, "max_total_num_tokens": 12}]


def _samples(metrics: MetricsCollector) -> dict:
    lines = metrics.render().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_each_replica_has_its_own_gauges():
    metrics = MetricsCollector("m")
    metrics.update_server_state({"num_running_reqs": 3, "num_queue_reqs": 4, "replicas": REPLICAS})
    samples = _samples(metrics)
    assert samples['sglang:num_running_reqs{model_name="m"}'] == 3  # the server-wide sum stays
    for key in ("num_running_reqs", "num_queue_reqs", "token_usage", "max_total_num_tokens"):
        for replica in REPLICAS:
            name = f'sglang:replica_{key}{{dp_rank="{replica["replica"]}",model_name="m"}}'
            assert samples[name] == replica[key], name


def test_one_replica_exports_no_replica_series():
    metrics = MetricsCollector("m")
    metrics.update_server_state({"num_running_reqs": 3})
    assert not [name for name in _samples(metrics) if "replica_" in name]
