"""200 concurrent streaming clients: all complete, and each stream's text equals the same
request answered without streaming (greedy), with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.server.http_helpers import DONE, wait_kv_idle

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
