"""200 concurrent streaming clients: all complete, and each stream's text equals the same
request answered without streaming (greedy), with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from sglang.runtime.sampling.sampling_params import MAX_STOP_STR_LEN, MAX_STOP_STRINGS
from tests.server.http_helpers import DONE, assert_error_body, wait_kv_idle

CLIENTS = 200
MAX_TOKENS = 12


def _request(i: int) -> tuple:
    """Half chat, half completions; distinct prompts so every stream has its own answer."""
    base = {"max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True}
    if i % 2:
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": f"Client {i} says hello"}], **base}
    return "/v1/completions", {"prompt": f"Client number {i} writes:", **base}


def _text(route: str, choice: dict, streamed: bool) -> str:
    if route == "/v1/completions":
        return choice["text"]
    if streamed:
        return choice["delta"].get("content") or ""
    return choice["message"]["content"]


async def _whole(client: httpx.AsyncClient, i: int) -> tuple:
    route, body = _request(i)
    response = await client.post(route, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    return _text(route, data["choices"][0], False), data["usage"]["completion_tokens"]


async def _streamed(client: httpx.AsyncClient, i: int) -> dict:
    route, body = _request(i)
    events = []
    async with client.stream("POST", route, json={**body, "stream": True,
                                                  "stream_options": {"include_usage": True}}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                payload = line[5:].strip()
                events.append(payload if payload == DONE else json.loads(payload))
    assert events and events[-1] == DONE and DONE not in events[:-1], f"client {i}: bad framing"
    chunks = events[:-1]
    choices = [c for chunk in chunks for c in chunk["choices"]]
    return {
        "text": "".join(_text(route, c, True) for c in choices),
        "finishes": sum(1 for c in choices if c["finish_reason"]),
        "usage": chunks[-1]["usage"],
        "ids": {chunk["id"] for chunk in chunks},
        "role_first": route == "/v1/completions" or chunks[0]["choices"][0]["delta"].get("role") == "assistant",
    }


def _client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CLIENTS + 8, max_keepalive_connections=CLIENTS + 8)
    return httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits, trust_env=False)


async def _run(base_url: str):
    # One client per phase: a keep-alive connection left idle by the first phase may be closed by
    # the server (uvicorn's keep-alive timeout) just as the second phase reuses it, a client-side
    # race that has nothing to do with streaming.
    async with _client(base_url) as client:
        expected = await asyncio.gather(*[_whole(client, i) for i in range(CLIENTS)])
    async with _client(base_url) as client:
        start = time.perf_counter()
        streams = await asyncio.gather(*[_streamed(client, i) for i in range(CLIENTS)])
        return expected, streams, time.perf_counter() - start


def test_200_concurrent_streams_match_non_streamed(server):
    expected, streams, elapsed = asyncio.run(_run(server.base_url))
    assert len(streams) == CLIENTS
    mismatched = [i for i, (want, got) in enumerate(zip(expected, streams)) if got["text"] != want[0]]
    assert not mismatched, f"{len(mismatched)} streams differ from their non-streamed text, e.g. client {mismatched[0]}"
    for i, (want, got) in enumerate(zip(expected, streams)):
        assert got["finishes"] == 1, f"client {i}: {got['finishes']} finish chunks"
        assert got["usage"]["completion_tokens"] == want[1] == MAX_TOKENS
        assert len(got["ids"]) == 1 and got["role_first"]
    ids = [next(iter(s["ids"])) for s in streams]
    assert len(set(ids)) == CLIENTS  # every client got its own response
    print(f"\n{CLIENTS} concurrent streams x {MAX_TOKENS} tokens in {elapsed:.2f} s "
          f"({CLIENTS * MAX_TOKENS / elapsed:.0f} tok/s)")
    wait_kv_idle(server.base_url)


# ---------------------------------------------------------------------------------- event loop
# Issue 15 item 4: tokenization must not run on the server's event loop, and input that cannot fit
# is refused before it is tokenized.
BIG_PROMPT = "The quick brown fox jumps over the lazy dog. " * (4 * 1024 * 1024 // 45)  # ~4 MB
HEALTH_BOUND_S = 1.0


class _HealthPoller:
    """Polls /health from a thread and records the slowest answer while the block runs."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.worst = 0.0
        self.answers = 0
        self.failures: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30, trust_env=False) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    status = client.get("/health").status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                self.worst = max(self.worst, time.perf_counter() - start)
                self.answers += 1
                if status != 200:
                    self.failures.append(status)
                time.sleep(0.02)

    def __enter__(self) -> "_HealthPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def check(self) -> None:
        assert not self.failures, self.failures[:3]
        assert self.answers >= 2
        assert self.worst < HEALTH_BOUND_S, f"/health took {self.worst:.2f} s while a big prompt was handled"


def _post(server, path: str, body: dict) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=300, trust_env=False) as client:
        return client.post(path, json=body)


@pytest.mark.parametrize("path,body", [
    ("/generate", {"text": BIG_PROMPT, "sampling_params": {"max_new_tokens": 1}}),
    ("/v1/completions", {"prompt": BIG_PROMPT, "max_tokens": 1}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": BIG_PROMPT}], "max_tokens": 1}),
], ids=["generate", "completions", "chat"])
def test_huge_prompt_is_refused_by_size_and_health_stays_responsive(server, path, body):
    with _HealthPoller(server.base_url) as poller:
        time.sleep(0.1)
        response = _post(server, path, body)
        time.sleep(0.1)
    poller.check()
    error = assert_error_body(response, 400)
    assert "bytes" in error["message"] and "at most" in error["message"], error["message"]
    wait_kv_idle(server.base_url)


def test_tokenize_route_runs_off_the_event_loop(server):
    """/tokenize has no context limit: a big text is tokenized, in a worker thread."""
    text = BIG_PROMPT[: 3 * 1024 * 1024]
    with _HealthPoller(server.base_url) as poller:
        time.sleep(0.1)
        response = _post(server, "/tokenize", {"prompt": text, "add_special_tokens": False})
        time.sleep(0.1)
    poller.check()
    assert response.status_code == 200, response.text[:300]
    assert response.json()["count"] > len(text) // 10


def test_too_many_stop_strings_is_a_400_and_others_keep_being_served(server):
    stops = [f"stop-{i}" for i in range(100_000)]
    body = {"text": "hello", "sampling_params": {"max_new_tokens": 4, "stop": stops}}
    with httpx.Client(base_url=server.base_url, timeout=120, trust_env=False) as client:
        response = client.post("/generate", json=body)
        error = assert_error_body(response, 400)
        assert "stop" in error["message"] and str(MAX_STOP_STRINGS) in error["message"], error["message"]
        long_stop = {"text": "hello", "sampling_params": {"max_new_tokens": 4, "stop": ["x" * (MAX_STOP_STR_LEN + 1)]}}
        error = assert_error_body(client.post("/generate", json=long_stop), 400)
        assert str(MAX_STOP_STR_LEN) in error["message"], error["message"]
        ok = client.post("/generate", json={"text": "hello", "sampling_params": {"max_new_tokens": 4,
                                                                               "stop": stops[:8]}})
        assert ok.status_code == 200, ok.text
    wait_kv_idle(server.base_url)
