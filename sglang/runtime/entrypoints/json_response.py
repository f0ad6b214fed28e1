"""JSON encoding with orjson: fast for large logprob payloads, non-finite floats (e.g. a -inf
logprob) become null instead of invalid JSON, and int dict keys (scheduler stats) are allowed."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def json_response(content: Any, status_code: int = 200) -> Response:
    if isinstance(content, BaseModel):
        content = content.model_dump()
    return Response(dumps(content), status_code=status_code, media_type="application/json")
