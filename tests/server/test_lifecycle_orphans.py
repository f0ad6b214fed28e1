"""kill -9 of the server while requests run: every child process exits within 5 s of its parent's
death (nothing blocks in a busy loop, a send or ZMQ termination), and the orphans remove the ipc
directory that the dead parent cannot."""

from __future__ import annotations

import time

import psutil

from tests.server.lifecycle_helpers import ipc_dirs, kill_leftovers, long_generate, long_model_dir, long_stream, private_tmp
from tests.server.server_process import ServerProcess

ORPHAN_EXIT_S = 5.0


def test_children_exit_within_5s_of_a_killed_server(tmp_path):
    server = ServerProcess(long_model_dir(), ["--device", "cpu"], env=private_tmp(tmp_path))
    children = []
    try:
        server.wait_healthy()
        children = psutil.Process(server.proc.pid).children(recursive=True)
        assert len(children) >= 2  # scheduler and detokenizer (and multiprocessing's resource tracker)
        requests = [long_stream(server.base_url), long_stream(server.base_url, "/generate"),
                    long_generate(server.base_url)]
        for request in requests[:2]:
            assert request.first.wait(120), request.error
        time.sleep(0.5)  # tokens are flowing through the scheduler and the detokenizer

        server.proc.kill()
        server.proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=ORPHAN_EXIT_S)
        assert not alive, f"still running {ORPHAN_EXIT_S} s after the server died: " + ", ".join(
            f"{p.pid} {p.cmdline()[-2:]}" for p in alive)
        assert ipc_dirs(tmp_path) == []
    finally:
        server.kill()
        kill_leftovers(children)
