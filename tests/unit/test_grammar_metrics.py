"""Grammar metrics: scheduler figures re-exported as Prometheus families."""

from sglang.runtime.metrics.collector import MetricsCollector
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness


def _series(text: str, name: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_scheduler_grammar_stats_reach_prometheus():
    h = SchedulerHarness(tiny_model_dir("llama"))
    for i in range(3):  # one compile, two cache hits
        h.submit(f"ok{i}", text="x", params={"regex": "[0-9]{2}", "max_new_tokens": 4})
    h.submit("bad", text="x", params={"regex": "(", "max_new_tokens": 4})
    h.run_until_idle()
    metrics = MetricsCollector("tiny")
    metrics.update_server_state(h.scheduler.state())
    text = metrics.render().decode()
    assert _series(text, "sglang:grammar_compiles_total")['sglang:grammar_compiles_total{model_name="tiny"}'] >= 1
    assert _series(text, "sglang:grammar_cache_hits_total")['sglang:grammar_cache_hits_total{model_name="tiny"}'] >= 2
    assert _series(text, "sglang:aborted_grammars_total")['sglang:aborted_grammars_total{model_name="tiny"}'] == 1
    buckets = _series(text, "sglang:grammar_compile_time_seconds_bucket")
    counts = list(buckets.values())
    assert counts == sorted(counts) and counts[-1] >= 1  # cumulative, +Inf holds every compile
