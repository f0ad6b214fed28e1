"""Small HTTP helpers shared by the server tests: SSE parsing and the KV-leak check."""

from __future__ import annotations

import json
import time
from typing import Iterable, List, Union

import httpx

DONE = "[DONE]"


def sse_data(lines: Iterable[str]) -> List[Union[dict, str]]:
    """Payloads of `data:` lines (parsed JSON, or the literal "[DONE]"), in order."""
    out: List[Union[dict, str]] = []
    for line in lines:
        if not line.startswith("data:"):
            assert line == "", f"unexpected SSE line {line!r}"
            continue
        payload = line[len("data:"):].strip()
        out.append(payload if payload == DONE else json.loads(payload))
    return out


def stream_events(client: httpx.Client, path: str, body: dict, headers: dict | None = None) -> List[Union[dict, str]]:
    with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_data(response.iter_lines())


def is_idle(info: dict) -> bool:
    return (info["available_kv_tokens"] == info["max_total_num_tokens"] and info["num_running_reqs"] == 0
            and info["num_queue_reqs"] == 0 and info["protected_tokens"] == 0)


def wait_kv_idle(base_url: str, timeout: float = 10.0, headers: dict | None = None) -> dict:
    """Poll /get_server_info until every KV slot is free or evictable again; returns the info."""
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        info = httpx.get(base_url + "/get_server_info", headers=headers, timeout=10).json()
        if is_idle(info):
            return info
        time.sleep(0.1)
    raise AssertionError(f"KV not back to idle within {timeout} s: available {info.get('available_kv_tokens')} "
                         f"of {info.get('max_total_num_tokens')}, running {info.get('num_running_reqs')}, "
                         f"queued {info.get('num_queue_reqs')}, protected {info.get('protected_tokens')}")


OPENAI_ERROR_TYPES = ("invalid_request_error", "server_error", "requests")


def assert_error_body(response: httpx.Response, status: int | None = None) -> dict:
    """An error: 4xx (or `status`), in the shape of the route it hit, with a non-empty message.
    /v1 routes: OpenAI's {"error": {message, type, param, code}} (returns the inner object);
    native routes: upstream SGLang's {"object": "error", message, type, param, code=status}."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    path = response.request.url.path
    if path == "/v1" or path.startswith("/v1/"):
        assert set(body) == {"error"}, body
        body = body["error"]
        assert set(body) == {"message", "type", "param", "code"}, body
        assert body["type"] in OPENAI_ERROR_TYPES and (body["code"] is None or isinstance(body["code"], str)), body
    else:
        assert body["object"] == "error" and body["code"] == response.status_code, body
    assert isinstance(body["message"], str) and body["message"], body
    return body
