"""`--api-key`: every route except /health needs `Authorization: Bearer <key>`.

A plain ASGI middleware (not BaseHTTPMiddleware), so streamed responses and disconnect
notifications pass through it untouched.
"""

from __future__ import annotations

import hmac
from typing import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sglang.runtime.entrypoints.openai.errors import error_body

OPEN_PATHS = ("/health",)


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = error_body("missing or wrong API key: send 'Authorization: Bearer <key>' with the key given "
                          "to --api-key", 401)
        await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected)
        return False
