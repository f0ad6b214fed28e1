"""`--api-key`: every route except /health needs `Authorization: Bearer <key>`.

A plain ASGI middleware (not BaseHTTPMiddleware), so streamed responses and disconnect
notifications pass through it untouched. The scheme name is matched case-insensitively
("bearer", "BEARER"), as RFC 7235 requires; the key itself is compared exactly, in constant time.
"""

from __future__ import annotations

import hmac
from typing import Iterable, Optional

from starlette.types import ASGIApp, Receive, Scope, Send

from sglang.runtime.entrypoints.openai.errors import APIError

OPEN_PATHS = ("/health",)
SCHEME = b"bearer"


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.expected = api_key.encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        error = APIError("missing or wrong API key: send 'Authorization: Bearer <key>' with the key given "
                         "to --api-key", 401)
        response = error.response(scope["path"], headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                token = bearer_token(value)
                return token is not None and hmac.compare_digest(token, self.expected)
        return False


def bearer_token(value: bytes) -> Optional[bytes]:
    """The credentials of an `Authorization: Bearer <token>` header value; None for another scheme.
    One or more spaces separate the scheme from the token (RFC 7235 `1*SP`)."""
    scheme, _, rest = value.strip().partition(b" ")
    if scheme.lower() != SCHEME:
        return None
    return rest.lstrip(b" ")
