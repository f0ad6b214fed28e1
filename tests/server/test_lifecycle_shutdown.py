"""SIGTERM with requests in flight (--graceful-shutdown-timeout): new requests get 503, requests
that finish within the timeout complete normally, the rest end with an error (a stream: error
event then [DONE]; non-streamed: a JSON error), the log has no traceback, the exit code is 0, and
neither child processes nor the ipc directory are left behind."""

from __future__ import annotations

import signal
import time

import httpx
import psutil

from tests.server.lifecycle_helpers import (
    BackgroundRequest,
    body_message,
    error_message,
    ipc_dirs,
    kill_leftovers,
    long_generate,
    long_model_dir,
    long_stream,
    private_tmp,
)
from tests.server.server_process import ServerProcess

GRACE_S = 6


def test_sigterm_drains_then_ends_open_requests_with_an_error(tmp_path):
    server = ServerProcess(long_model_dir(), ["--device", "cpu", "--graceful-shutdown-timeout", str(GRACE_S)],
                           env=private_tmp(tmp_path))
    children = []
    try:
        server.wait_healthy()
        children = psutil.Process(server.proc.pid).children(recursive=True)
        assert len(ipc_dirs(tmp_path)) == 1
        stream = long_stream(server.base_url)
        native_stream = long_stream(server.base_url, "/generate")
        blocking = long_generate(server.base_url)
        for request in (stream, native_stream):
            assert request.first.wait(120), request.error
        short = BackgroundRequest(server.base_url, "/v1/completions",
                                  {"prompt": "Hi", "max_tokens": 8, "ignore_eos": True, "stream": True}, stream=True)
        assert short.first.wait(120), short.error
        time.sleep(0.5)  # the non-streamed request has reached the scheduler
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)

        # Draining: new requests, /health included, are refused with a message.
        with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
            refused = client.post("/v1/completions", json={"prompt": "late", "max_tokens": 2})
            assert refused.status_code == 503 and "shutting down" in body_message(refused.json())
            assert client.get("/health").status_code == 503

        for request in (short, stream, native_stream, blocking):
            request.wait(GRACE_S + 30)
        # Finished within the grace period: a normal end.
        assert short.events[-1] == "[DONE]" and not any(error_message(e) for e in short.events), short.events[-2:]
        assert short.events[-2]["choices"][0]["finish_reason"] == "length"
        # Still running at the deadline: an error event, then [DONE].
        for request in (stream, native_stream):
            assert request.error is None, request.error
            assert request.events[-1] == "[DONE]", request.events[-3:]
            assert "shutting down" in error_message(request.events[-2]), request.events[-2]
        assert blocking.status == 503 and "shutting down" in body_message(blocking.json), blocking.json

        assert server.proc.wait(30) == 0
        log = server.log()
        assert "Traceback" not in log and "CancelledError" not in log, log[-5000:]
        assert "still running after --graceful-shutdown-timeout" in log
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"children still running: {[p.pid for p in alive]}"
        assert ipc_dirs(tmp_path) == []
    finally:
        server.kill()
        kill_leftovers(children)


def test_sigterm_when_idle_exits_at_once(tmp_path):
    server = ServerProcess(long_model_dir(), ["--device", "cpu", "--skip-server-warmup",
                                              "--graceful-shutdown-timeout", "60"], env=private_tmp(tmp_path))
    try:
        server.wait_healthy()
        started = time.monotonic()
        assert server.terminate(timeout=30) == 0
        assert time.monotonic() - started < 20  # nothing in flight: the 60 s grace is not waited out
        assert ipc_dirs(tmp_path) == []
    finally:
        server.kill()
