"""Data parallelism through the HTTP server: `--dp-size 2` serves requests, /get_server_info lists
each replica, /metrics answers, and a replica's scheduler killed with SIGKILL takes the server down
with exit code 1 within seconds, naming that replica and leaving no process behind."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil

from sglang.testing.fixtures import tiny_model_dir
from tests.server.lifecycle_helpers import kill_leftovers, private_tmp
from tests.server.server_process import ServerProcess


def test_dp2_server_reports_replicas_and_exits_when_one_dies(tmp_path):
    server = ServerProcess(tiny_model_dir("llama"), ["--device", "cpu", "--dp-size", "2", "--enable-metrics",
                                                     "--skip-server-warmup"], env=private_tmp(tmp_path))
    children = []
    try:
        server.wait_healthy()
        children = psutil.Process(server.proc.pid).children(recursive=True)
        for _ in range(2):
            out = httpx.post(server.base_url + "/generate", timeout=60, trust_env=False,
                             json={"text": "Hello", "sampling_params": {"max_new_tokens": 2}}).json()
            assert out["meta_info"]["completion_tokens"] == 2
        info = httpx.get(server.base_url + "/get_server_info", timeout=10, trust_env=False).json()
        assert info["dp_size"] == 2 and info["load_balance_method"] == "cache_aware"
        assert [r["replica"] for r in info["replicas"]] == [0, 1]
        assert info["max_total_num_tokens"] == sum(r["max_total_num_tokens"] for r in info["replicas"])
        metrics = httpx.get(server.base_url + "/metrics", timeout=10, trust_env=False)
        assert metrics.status_code == 200 and b"num_running" in metrics.content
        for rank, replica in enumerate(info["replicas"]):  # each replica's own gauges
            line = f'sglang:replica_max_total_num_tokens{{dp_rank="{rank}",model_name='
            assert line in metrics.text and f'{float(replica["max_total_num_tokens"])}' in metrics.text

        replica = server.child_pid("scheduler DP1")
        os.kill(replica, signal.SIGKILL)
        killed_at = time.monotonic()
        assert server.proc.wait(30) == 1
        assert time.monotonic() - killed_at < 5
        assert f"the scheduler DP1 process (pid {replica}) exited unexpectedly" in server.log()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"children still running: {[p.pid for p in alive]}"
    finally:
        server.kill()
        kill_leftovers(children)
