"""Error bodies for every route, and the app's exception handlers.

Two shapes, chosen by the route's path:
- `/v1/*` (the OpenAI-compatible API): OpenAI's `{"error": {"message", "type", "param", "code"}}`,
  with OpenAI's type strings (`invalid_request_error` for client errors, 401 and 404 included;
  `server_error` for 5xx) and `code` a machine-readable string or null (`invalid_api_key`,
  `model_not_found`, ...). The `openai` client unwraps `error` into `exc.body` / `exc.code`.
- every other route (upstream SGLang's native API): `{"object": "error", "message", "type", "param",
  "code"}` with `type` a class-like name and `code` the HTTP status, as upstream answers.
Every failure path ends here, so a bad request never escapes as a bare 500 without a message.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

OPENAI_PREFIX = "/v1"

# Native type names (upstream SGLang's), by HTTP status.
_NATIVE_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestTooLargeError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    499: "ClientClosedRequestError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}

# OpenAI (type, code) by HTTP status where OpenAI uses something other than the defaults below.
_OPENAI_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def native_type(status_code: int) -> str:
    # No HTTPStatus lookup: non-standard statuses (499 client closed) must not raise here.
    return _NATIVE_TYPES.get(status_code) or ("InternalServerError" if status_code >= 500 else "BadRequestError")


def openai_type_and_code(status_code: int) -> Tuple[str, Optional[str]]:
    if status_code in _OPENAI_TYPES:
        return _OPENAI_TYPES[status_code]
    return ("server_error" if status_code >= 500 else "invalid_request_error"), None


class APIError(Exception):
    """An error answered to the client with this HTTP status, in the shape of the route it hit.

    `err_type` is the native type name (default: by status); `code` is OpenAI's machine-readable
    code for /v1 routes (default: by status, usually null)."""

    def __init__(self, message: str, status_code: int = 400, err_type: Optional[str] = None,
                 param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.err_type = err_type or native_type(status_code)
        self.param = param
        self.code = code

    def body(self) -> Dict[str, Any]:
        """The native (upstream SGLang) body."""
        return error_body(self.message, self.status_code, self.err_type, self.param)

    def openai_body(self) -> Dict[str, Any]:
        """The OpenAI body; also the payload of an error event in a /v1 stream."""
        return openai_error_body(self.message, self.status_code, self.param, self.code)

    def body_for(self, path: str) -> Dict[str, Any]:
        return self.openai_body() if is_openai_path(path) else self.body()

    def response(self, path: str = "", headers: Optional[Dict[str, str]] = None) -> JSONResponse:
        return JSONResponse(self.body_for(path), status_code=self.status_code, headers=headers)


def error_body(message: str, status_code: int, err_type: Optional[str] = None,
               param: Optional[str] = None) -> Dict[str, Any]:
    return {"object": "error", "message": message, "type": err_type or native_type(status_code),
            "param": param, "code": status_code}


def openai_error_body(message: str, status_code: int, param: Optional[str] = None,
                      code: Optional[str] = None) -> Dict[str, Any]:
    err_type, default_code = openai_type_and_code(status_code)
    return {"error": {"message": message, "type": err_type, "param": param, "code": code or default_code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    return APIError(message, 400, param=param, code=code)


def from_abort_reason(reason: Optional[dict]) -> Optional[APIError]:
    """An abort finish reason that carries an HTTP status (e.g. queue full -> 503) as an error."""
    if not isinstance(reason, dict) or reason.get("type") != "abort":
        return None
    status = int(reason.get("status_code") or 400)
    return APIError(str(reason.get("message") or "the request was aborted"), status, reason.get("err_type"))


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return exc.response(request.url.path)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return APIError(message, exc.status_code).response(request.url.path, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return APIError(describe_validation_errors(exc.errors()), 400).response(request.url.path)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    message = f"internal server error ({type(exc).__name__}: {exc}); the server keeps running"
    return APIError(message, 500).response(request.url.path)


def describe_validation_errors(errors: list) -> str:
    """Pydantic errors as one readable line: 'messages.0.role: Input should be ...; ...'."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid value')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more
