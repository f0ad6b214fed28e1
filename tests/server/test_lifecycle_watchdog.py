"""A scheduler that stops making progress while requests are pending (here: SIGSTOP) is noticed
after --watchdog-timeout: the pending requests get an error instead of hanging, /health stops
answering 200, and the server exits with code 1 saying why, leaving no process behind. An idle
scheduler that is silent is not declared hung."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil

from tests.server.lifecycle_helpers import (
    body_message,
    error_message,
    kill_leftovers,
    long_generate,
    long_model_dir,
    long_stream,
    private_tmp,
)
from tests.server.server_process import ServerProcess

WATCHDOG_S = 3


def _health_after(server: ServerProcess, seconds: float) -> list:
    """/health statuses polled for `seconds` (None: no answer, the server is gone)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            seen.append(httpx.get(server.base_url + "/health", timeout=2, trust_env=False).status_code)
        except httpx.HTTPError:
            seen.append(None)
        time.sleep(0.05)
    return seen


def test_stopped_scheduler_fails_pending_requests_and_stops_the_server(tmp_path):
    server = ServerProcess(long_model_dir(), ["--device", "cpu", "--watchdog-timeout", str(WATCHDOG_S)],
                           env=private_tmp(tmp_path))
    children = []
    try:
        server.wait_healthy()
        children = psutil.Process(server.proc.pid).children(recursive=True)
        scheduler = server.child_pid("scheduler")
        # Idle, a silent scheduler is nothing to worry about.
        os.kill(scheduler, signal.SIGSTOP)
        time.sleep(WATCHDOG_S + 1)
        assert httpx.get(server.base_url + "/health", timeout=5, trust_env=False).status_code == 200
        os.kill(scheduler, signal.SIGCONT)

        stream = long_stream(server.base_url)
        assert stream.first.wait(120), stream.error
        os.kill(scheduler, signal.SIGSTOP)
        stopped_at = time.monotonic()
        blocking = long_generate(server.base_url)

        stream.wait(WATCHDOG_S + 60)
        assert time.monotonic() - stopped_at >= WATCHDOG_S  # not before the timeout
        assert stream.events[-1] == "[DONE]", stream.events[-3:]
        assert "made no progress" in error_message(stream.events[-2]), stream.events[-2]
        blocking.wait(30)
        assert blocking.status == 503 and "--watchdog-timeout" in body_message(blocking.json), blocking.json
        assert 200 not in _health_after(server, 5)

        assert server.proc.wait(30) == 1
        log = server.log()
        assert f"the scheduler process (pid {scheduler}) made no progress" in log
        assert "shutting the server down" in log
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"children still running: {[p.pid for p in alive]}"
    finally:
        server.kill()
        kill_leftovers(children)
