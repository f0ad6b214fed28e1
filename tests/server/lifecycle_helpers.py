"""Shared by the process-lifecycle tests: a model whose requests can run for minutes, requests
that run in a background thread, and the leftovers a server must not leave behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
import psutil

from sglang.testing.fixtures import tiny_model_dir

# 65k positions: a request with max_tokens 60000 decodes for well over a minute on CPU, so it is
# certainly still running when the test acts.
LONG_CONTEXT = 65536
LONG_TOKENS = 60000


def long_model_dir() -> str:
    return tiny_model_dir("llama", max_position_embeddings=LONG_CONTEXT)


def ipc_dirs(tmp: Path) -> List[str]:
    return sorted(p.name for p in tmp.glob("sglang-ipc-*"))


def private_tmp(tmp_path: Path) -> Dict[str, str]:
    """Environment making the server's temporary files (the ipc directory) land in `tmp_path`."""
    return {"TMPDIR": str(tmp_path)}


class BackgroundRequest:
    """One HTTP request running in a thread. Streams record their `data:` payloads (parsed JSON,
    or the string "[DONE]"); `first` is set once the first one arrived."""

    def __init__(self, base_url: str, path: str, body: dict, stream: bool):
        self.base_url, self.path, self.body, self.stream = base_url, path, body, stream
        self.events: List[Any] = []
        self.status: Optional[int] = None
        self.json: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=600, trust_env=False) as client:
                if self.stream:
                    self._read_stream(client)
                else:
                    self.first.set()  # nothing to wait for: the request has been sent (almost)
                    reply = client.post(self.path, json=self.body)
                    self.status, self.json = reply.status_code, reply.json()
        except BaseException as exc:  # recorded for the test to assert on
            self.error = exc
        finally:
            self.first.set()

    def _read_stream(self, client: httpx.Client) -> None:
        with client.stream("POST", self.path, json=self.body) as reply:
            self.status = reply.status_code
            for line in reply.iter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[len("data: "):]
                self.events.append(payload if payload == "[DONE]" else json.loads(payload))
                self.first.set()

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.path} still running after {timeout} s"


def long_stream(base_url: str, path: str = "/v1/completions") -> BackgroundRequest:
    body = {"prompt": "Once upon a time", "max_tokens": LONG_TOKENS, "ignore_eos": True, "stream": True}
    if path == "/generate":
        body = {"text": "Once upon a time", "stream": True,
                "sampling_params": {"max_new_tokens": LONG_TOKENS, "ignore_eos": True}}
    return BackgroundRequest(base_url, path, body, stream=True)


def long_generate(base_url: str) -> BackgroundRequest:
    body = {"text": "Far away", "sampling_params": {"max_new_tokens": LONG_TOKENS, "ignore_eos": True}}
    return BackgroundRequest(base_url, "/generate", body, stream=False)


def error_message(event: Any) -> str:
    """The message of a stream's error event (native or OpenAI shape); '' if it is no error."""
    if not isinstance(event, dict) or "error" not in event:
        return ""
    error = event["error"]
    return error.get("message", "") if isinstance(error, dict) else str(error)


def body_message(body: Any) -> str:
    """The message of an error body: native ({"message": ...}) or OpenAI ({"error": {...}})."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body.get("message", "") if isinstance(body, dict) else ""


def kill_leftovers(procs: List[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.resume()  # a stopped process ignores everything but SIGKILL and SIGCONT
            proc.kill()
        except psutil.Error:
            pass
