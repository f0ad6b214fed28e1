"""Running doc snippets: each in its own process, against a server started from the docs themselves.

A Python snippet runs as `python snippet.py`, a shell snippet under `bash` with `set -euo pipefail`
and `curl` made strict (`-sS --fail-with-body`: an HTTP error fails the snippet instead of
printing an error body and exiting 0). Both run from the repository root, as a reader of the docs
would (`python benchmarks/...`), with the docs' port 30000 replaced by the port of the server the
snippet talks to. Snippets write files only under /tmp.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import httpx

from sglang.testing.doc_snippets import Snippet, governing_server

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO_ROOT / "docs"
SNIPPET_TIMEOUT_S = 300.0
SERVER_START_TIMEOUT_S = 300.0
_OUTPUT_TAIL = 4000
BASH_PRELUDE = "set -euo pipefail\ncurl() { command curl -sS --fail-with-body \"$@\"; }\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def snippet_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1"  # the server is local
    return env


def _command(snippet: Snippet, code: str, workdir: Path) -> List[str]:
    if snippet.language == "python":
        path = workdir / "snippet.py"
        path.write_text(code, encoding="utf-8")
        return [sys.executable, str(path)]
    return ["bash", "-c", BASH_PRELUDE + code]


def _tail(text: str) -> str:
    return text[-_OUTPUT_TAIL:]


@dataclass
class SnippetRun:
    """How one snippet ran: its exit code and a report of the code and output for failures."""

    returncode: int
    stdout: str
    report: str


def run_snippet(snippet: Snippet, port: int, timeout: float = SNIPPET_TIMEOUT_S) -> SnippetRun:
    """Run `snippet` against the server on `port`. A run past `timeout` is exit code -1."""
    code = snippet.with_port(port)
    with tempfile.TemporaryDirectory(prefix="sglang-doc-") as workdir:
        try:
            proc = subprocess.run(_command(snippet, code, Path(workdir)), cwd=REPO_ROOT, env=snippet_env(),
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = _tail((exc.stdout or b"").decode(errors="replace"))
            return SnippetRun(-1, out, f"{snippet.id} ran longer than {timeout:.0f} s\n--- code\n{code}\n"
                                       f"--- output\n{out}")
    return SnippetRun(proc.returncode, proc.stdout,
                      f"{snippet.id} exited with {proc.returncode}\n--- code\n{code}\n--- stdout\n"
                      f"{_tail(proc.stdout)}\n--- stderr\n{_tail(proc.stderr)}")


class DocServer:
    """A server started by running a doc block (with its port rewritten), in its own process group."""

    def __init__(self, snippet: Snippet):
        self.snippet = snippet
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="sglang-doc-server-", suffix=".log")[1])
        code = snippet.with_port(self.port)
        if str(self.port) not in code:
            raise AssertionError(f"{snippet.id} starts a server but does not say `--port 30000`; the docs test "
                                 f"must move it to a free port")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["bash", "-c", BASH_PRELUDE + code], cwd=REPO_ROOT,
                                         env=snippet_env(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return _tail(self.log_path.read_text(errors="replace"))

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/health"
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.snippet.id}: the server exited with {self.proc.returncode} during "
                                         f"startup\n--- log\n{self.log()}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise AssertionError(f"{self.snippet.id}: the server was not healthy within {timeout:.0f} s\n"
                             f"--- log\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # whatever is left of the group
        self.proc.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class DocServers:
    """The session server (the block marked `server`) and at most one page server at a time (a
    page's own launch block, serving the snippets after it on that page)."""

    def __init__(self, snippets: Sequence[Snippet]):
        self.snippets = list(snippets)
        self.session: Optional[DocServer] = None
        self.page: Optional[DocServer] = None
        self.failed: Dict[str, AssertionError] = {}  # snippet id -> why it did not start (not retried)

    def port_for(self, snippet: Snippet) -> int:
        owner = governing_server(self.snippets, snippet)
        if owner is None:
            if self.session is None:
                self.session = self._start(next(s for s in self.snippets if s.is_session_server))
            return self.session.port
        if self.page is None or self.page.snippet != owner:
            if self.page is not None:
                self.page.stop()
                self.page = None
            self.page = self._start(owner)
        return self.page.port

    def _start(self, snippet: Snippet) -> DocServer:
        if snippet.id in self.failed:
            raise self.failed[snippet.id]
        server = DocServer(snippet)
        try:
            server.wait_healthy()
        except AssertionError as exc:
            server.stop()
            self.failed[snippet.id] = exc
            raise
        return server

    def stop(self) -> None:
        for server in (self.page, self.session):
            if server is not None:
                server.stop()
        self.page = self.session = None
