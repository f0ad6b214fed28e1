"""Graceful shutdown of the HTTP server (SIGTERM/SIGINT), in three steps:

1. Close the gate: every new HTTP request, /health included, is answered 503 "shutting down"
   (load balancers stop routing here); the listening socket stays open so nobody gets a reset.
2. Drain: wait up to --graceful-shutdown-timeout for the requests in flight to finish.
3. End the rest: pending generations fail with a 503 error through the normal error path, so a
   stream ends with an error event and `data: [DONE]`, a non-streamed request gets a JSON error,
   and nothing is cancelled mid-write (no CancelledError). Then uvicorn stops.

A second signal skips what is left of step 2.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from starlette.types import ASGIApp, Receive, Scope, Send

from sglang.runtime.entrypoints.openai.errors import APIError

logger = logging.getLogger(__name__)

# After failing what is left, how long handlers get to write their error responses.
FINAL_FLUSH_S = 5.0
_POLL_S = 0.05
SHUTTING_DOWN_MESSAGE = "the server is shutting down and accepts no new requests"


class RequestGate:
    """Counts the HTTP requests in flight; once closed, new requests are refused."""

    def __init__(self) -> None:
        self.closed = False
        self.inflight = 0

    async def wait_idle(self, timeout_s: float, interrupt: Optional[asyncio.Event] = None) -> bool:
        """True once no request is in flight; False after `timeout_s` or when `interrupt` is set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.inflight and loop.time() < deadline and not (interrupt and interrupt.is_set()):
            await asyncio.sleep(_POLL_S)
        return self.inflight == 0


class RequestGateMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): a streamed response counts as in flight until its last
    byte is sent."""

    def __init__(self, app: ASGIApp, gate: RequestGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.gate.closed:
            response = APIError(SHUTTING_DOWN_MESSAGE, 503).response(scope["path"], headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        self.gate.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.inflight -= 1


async def drain(gate: RequestGate, tokenizer_manager, timeout_s: float, signal_name: str,
                interrupt: asyncio.Event) -> None:
    """Steps 1-3 above; returns when the server may stop."""
    gate.closed = True
    logger.info("received %s: refusing new requests; waiting up to %g s (--graceful-shutdown-timeout) for %d "
                "request(s) in flight", signal_name, timeout_s, gate.inflight)
    if await gate.wait_idle(timeout_s, interrupt):
        return
    reason = "a second signal" if interrupt.is_set() else f"--graceful-shutdown-timeout ({timeout_s:g} s)"
    logger.warning("%d request(s) still running after %s; ending them with an error", gate.inflight, reason)
    tokenizer_manager.fail_pending(f"the server is shutting down: the request did not finish before {reason}",
                                   refuse_new=True)
    if not await gate.wait_idle(FINAL_FLUSH_S):
        logger.warning("%d request(s) did not end within %g s; stopping anyway", gate.inflight, FINAL_FLUSH_S)
