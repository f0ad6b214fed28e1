"""Prometheus metrics for the HTTP server (see collector.py)."""

from sglang.runtime.metrics.collector import MetricsCollector

__all__ = ["MetricsCollector"]
