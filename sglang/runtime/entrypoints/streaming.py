"""Server-sent events: framing, and a response that always closes its source.

Closing matters for memory: when a client disconnects, the generation generator must be closed
so that the tokenizer manager's `finally` sends an abort and the scheduler frees the request's KV
slots. Starlette cancels the stream task on disconnect, but if the cancel lands while our
generator is suspended at a `yield` (or before it started), nothing closes it until garbage
collection; SSEResponse closes it explicitly.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Optional

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from sglang.runtime.entrypoints.json_response import dumps

SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


class SSEResponse(StreamingResponse):
    """`content` renders events from `source` (the runtime's output stream); both are closed when
    the response ends for any reason. `source` is closed separately because a generator that never
    started (client gone before the first byte) does not close what it would have iterated."""

    def __init__(self, content: AsyncIterator[bytes], source: Optional[AsyncIterator[Any]] = None):
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for stream in (self.body_iterator, self.source):
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
