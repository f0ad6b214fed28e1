"""OpenAI-style errors for every route (native ones included), and the app's exception handlers.

Body shape: {"object": "error", "message", "type", "param", "code"} with `code` the HTTP status,
which is what upstream SGLang returns and what the `openai` client reads the message from.
Every failure path ends here, so a bad request never escapes as a bare 500 without a message.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestTooLargeError",
    422: "UnprocessableEntityError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class APIError(Exception):
    """An error answered to the client as an OpenAI-style body with this HTTP status."""

    def __init__(self, message: str, status_code: int = 400, err_type: Optional[str] = None,
                 param: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.err_type = err_type or _TYPES.get(status_code, HTTPStatus(status_code).phrase.replace(" ", ""))
        self.param = param

    def body(self) -> Dict[str, Any]:
        return error_body(self.message, self.status_code, self.err_type, self.param)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code)


def error_body(message: str, status_code: int, err_type: Optional[str] = None,
               param: Optional[str] = None) -> Dict[str, Any]:
    return {"object": "error", "message": message, "type": err_type or _TYPES.get(status_code, "Error"),
            "param": param, "code": status_code}


def bad_request(message: str, param: Optional[str] = None) -> APIError:
    return APIError(message, 400, param=param)


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
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse(error_body(message, exc.status_code), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(error_body(describe_validation_errors(exc.errors()), 400), status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    message = f"internal server error ({type(exc).__name__}: {exc}); the server keeps running"
    return JSONResponse(error_body(message, 500), status_code=500)


def describe_validation_errors(errors: list) -> str:
    """Pydantic errors as one readable line: 'messages.0.role: Input should be ...; ...'."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid value')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more
