"""Reading request bodies: size-capped, strict JSON, and pydantic validation into 400s.

Bodies are parsed by hand instead of by FastAPI so that every failure (empty body, truncated or
invalid JSON, invalid UTF-8, NaN, a JSON array where an object belongs, wrong field types) gets
the same OpenAI-style 400 with a message that says what to fix.
"""

from __future__ import annotations

from typing import Any, Type, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from sglang.runtime.entrypoints.json_depth import MAX_JSON_DEPTH, exceeds_depth
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request, describe_validation_errors

# Far above any prompt that fits a context window, far below what would hurt the server.
MAX_BODY_BYTES = 64 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    body = await read_body(request, max_bytes)
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object")
    if exceeds_depth(body):  # before parsing: the parser's recursion is unbounded (see json_depth)
        raise bad_request(f"the request body nests arrays/objects more than {MAX_JSON_DEPTH} levels deep")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON (UTF-8, no NaN/Infinity): {exc}") from None


async def read_json_object(request: Request) -> dict:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got a JSON {type(data).__name__}")
    return data


async def read_model(request: Request, model: Type[M]) -> M:
    return validate_model(await read_json_object(request), model)


def validate_model(data: dict, model: Type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise bad_request(describe_validation_errors(exc.errors())) from None


def _too_large(max_bytes: int) -> APIError:
    return APIError(f"the request body is larger than {max_bytes // (1024 * 1024)} MiB", 413)
