"""Start `python -m sglang.launch_server` as a subprocess for tests, and stop it cleanly.

The server's output goes to a log file (a pipe nobody reads would fill and block the server);
the log is shown when startup fails.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 240.0
MODEL_NAME = "tiny-llama"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, model_path: str, extra_args: Optional[List[str]] = None, api_key: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log_path = Path(tempfile.mkstemp(prefix="sglang-server-", suffix=".log")[1])
        args = ["--model-path", model_path, "--port", str(self.port), "--served-model-name", MODEL_NAME,
                "--random-seed", "0", *(extra_args or [])]
        if api_key:
            args += ["--api-key", api_key]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               **(env or {})}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "sglang.launch_server", *args], cwd=REPO_ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pid(self, name: str) -> int:
        """Pid of the server's scheduler or detokenizer, from the line the launcher logs."""
        found = re.search(rf"the {name} process \(pid (\d+)\)", self.log())
        assert found, f"no pid of the {name} process in the log:\n{self.log()[-3000:]}"
        return int(found.group(1))

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} during startup:\n{self.log()[-5000:]}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"server not healthy within {timeout:.0f} s:\n{self.log()[-5000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code (SIGKILL as a last resort)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_server(model_path: str, extra_args: Optional[List[str]] = None, api_key: Optional[str] = None) -> ServerProcess:
    server = ServerProcess(model_path, extra_args, api_key)
    server.wait_healthy()
    return server
