"""What every fuzzed response must look like, whatever was sent.

- Status 2xx or 4xx; 5xx only as a documented 503 (queue full, shutting down) saying so.
- Error bodies in the shape of the route: OpenAI's `{"error": {...}}` on /v1, upstream SGLang's
  `{"object": "error", ...}` on native routes, with a message.
- A 200 answers in the form asked for: JSON with the route's top-level fields, or (stream: true)
  well-formed SSE ending with `data: [DONE]`, whose error events (if any) have the route's shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Optional

from tests.server.fuzz_strategies import FuzzRequest

# The 503s the server documents, by a phrase of their message.
DOCUMENTED_503 = ("--max-queued-requests", "shutting down")
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
OPENAI_ERROR_TYPES = ("invalid_request_error", "server_error", "requests")


@dataclass
class Answer:
    status: int
    content_type: str
    content: bytes
    complete: bool  # False when the client hung up before the end


def is_openai(route: str) -> bool:
    return route.startswith("/v1/")


def check_answer(req: FuzzRequest, answer: Answer) -> None:
    """Raise AssertionError describing what is wrong with `answer` to `req`."""
    status = answer.status
    assert status != -1, f"no HTTP answer: {answer.content.decode()}"
    assert status < 500 or status == 503, f"HTTP {status}: {answer.content[:500]!r}"
    if not answer.complete:
        return  # the client left; only the status line can be judged
    if status >= 400:
        message = check_error_body(req.route, _json(answer.content), status)
        if status == 503:
            assert any(p in message for p in DOCUMENTED_503), f"undocumented 503: {message}"
        return
    assert status == 200, f"HTTP {status}: {answer.content[:300]!r}"
    if req.streamed:
        assert answer.content_type.startswith("text/event-stream"), answer.content_type
        check_stream(req.route, answer.content)
    else:
        assert answer.content_type.startswith("application/json"), answer.content_type
        check_result(req.route, _json(answer.content))


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError as exc:
        raise AssertionError(f"not JSON ({exc}): {content[:300]!r}") from None


def check_error_body(route: str, body: Any, status: int) -> str:
    """The message of an error body in the route's shape."""
    assert isinstance(body, dict), body
    if is_openai(route):
        assert set(body) == {"error"} and isinstance(body["error"], dict), body
        error = body["error"]
        assert set(error) == OPENAI_ERROR_KEYS, error
        assert error["type"] in OPENAI_ERROR_TYPES, error
        assert error["code"] is None or isinstance(error["code"], str), error
    else:
        error = body
        assert error.get("object") == "error" and error.get("code") == status, error
        assert isinstance(error.get("type"), str), error
    assert isinstance(error["message"], str) and error["message"], error
    return error["message"]


def check_result(route: str, body: Any) -> None:
    if route == "/generate":
        for item in body if isinstance(body, list) else [body]:
            assert isinstance(item, dict) and isinstance(item.get("text"), str), item
            assert isinstance(item.get("meta_info"), dict) and "finish_reason" in item["meta_info"], item
        return
    expected = "text_completion" if route == "/v1/completions" else "chat.completion"
    assert isinstance(body, dict) and body.get("object") == expected, body
    assert isinstance(body.get("choices"), list) and body["choices"], body
    for choice in body["choices"]:
        if route == "/v1/completions":
            assert isinstance(choice.get("text"), str), choice
        else:
            message = choice.get("message")
            assert isinstance(message, dict) and message.get("role") == "assistant", choice
            assert message.get("content") is None or isinstance(message["content"], str), choice
        assert choice.get("finish_reason") in ("stop", "length", "abort", None), choice
    assert isinstance(body.get("usage"), dict), body


def sse_payloads(content: bytes) -> List[str]:
    """The `data:` payloads of an SSE body; every line must be a data line or blank."""
    text = content.decode("utf-8")
    payloads = []
    for line in text.split("\n"):
        if line.startswith("data: "):
            payloads.append(line[len("data: "):])
        else:
            assert line == "", f"unexpected SSE line {line[:200]!r}"
    assert text.endswith("\n\n"), f"SSE body does not end with a blank line: {text[-200:]!r}"
    return payloads


def check_stream(route: str, content: bytes) -> None:
    payloads = sse_payloads(content)
    assert payloads and payloads[-1] == "[DONE]", f"stream does not end with [DONE]: {payloads[-3:]}"
    events = [_json(p.encode()) for p in payloads[:-1]]
    assert "[DONE]" not in payloads[:-1], payloads
    for i, event in enumerate(events):
        assert isinstance(event, dict), event
        if "error" in event:
            error = event["error"]
            if is_openai(route):
                assert isinstance(error, dict) and set(error) == OPENAI_ERROR_KEYS, event
            else:
                assert isinstance(error, dict) and error.get("object") == "error", event
            assert isinstance(error.get("message"), str) and error["message"], event
            assert i == len(events) - 1, f"events after an error event: {events[i + 1:][:2]}"
        else:
            check_chunk(route, event)


def check_chunk(route: str, event: dict) -> None:
    if route == "/generate":
        assert isinstance(event.get("text"), str) and isinstance(event.get("meta_info"), dict), event
        return
    expected = "text_completion" if route == "/v1/completions" else "chat.completion.chunk"
    assert event.get("object") == expected, event
    assert isinstance(event.get("choices"), list), event
    if not event["choices"]:
        assert isinstance(event.get("usage"), dict), event  # the include_usage chunk
    for choice in event["choices"]:
        if route == "/v1/completions":
            assert isinstance(choice.get("text"), str), choice
        else:
            assert isinstance(choice.get("delta"), dict), choice


def error_message(answer: Answer) -> Optional[str]:
    """The message of an error answer, for statistics ('' when it has none)."""
    try:
        body = json.loads(answer.content)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body.get("message", "") if isinstance(body, dict) else ""
