"""Server-sent events as our server (and OpenAI-style servers) stream them.

Each event is one `data: <json>` line; the stream ends with `data: [DONE]`. Comment lines
(`: ...`), blank separators and other fields (`event:`, `id:`) carry nothing a benchmark needs.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Optional

DONE = "[DONE]"


class SSEError(RuntimeError):
    """The stream carried something that is not a well-formed event, or an error event."""


def parse_sse_line(line: str) -> Optional[Any]:
    """Parse one line: the decoded JSON of a data line, DONE for the terminator, None otherwise."""
    line = line.rstrip("\r\n")
    if not line.startswith("data:"):
        return None
    payload = line[len("data:"):].strip()
    if not payload:
        return None
    if payload == DONE:
        return DONE
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        raise SSEError(f"malformed SSE data line (not JSON): {payload[:200]!r}") from e


def check_event(event: Any) -> dict:
    """Reject error events (`{"error": ...}` or `{"object": "error", ...}`) and non-objects."""
    if not isinstance(event, dict):
        raise SSEError(f"SSE event is not a JSON object: {str(event)[:200]}")
    if "error" in event or event.get("object") == "error":
        detail = event.get("error", event)
        message = detail.get("message", detail) if isinstance(detail, dict) else detail
        raise SSEError(f"server sent an error event: {message}")
    return event


async def iter_sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict]:
    """Yield the JSON objects of a stream of lines, stopping at DONE."""
    async for line in lines:
        event = parse_sse_line(line)
        if event is None:
            continue
        if event == DONE:
            return
        yield check_event(event)
