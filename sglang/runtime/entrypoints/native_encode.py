"""Upstream SGLang's native routes of embedding and reward models: `/encode` and `/classify`.

Both take `{"text": str | [str]}` or `{"input_ids": [int] | [[int]]}` (optionally `rid`) and
answer `{"embedding": [...], "meta_info": {...}}` per prompt (a list for a batch). For a reward
/ classification model the "embedding" holds its scores, one per label (upstream's shape).
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.request_body import read_json_object, validate_model
from sglang.runtime.entrypoints.request_runner import generate_once
from sglang.runtime.entrypoints.server_context import MAX_REQUESTS_PER_CALL, ServerContext, get_ctx
from sglang.runtime.managers.embedding_requests import make_encode_input, to_embedding_results, wrong_model_kind_message

router = APIRouter()


class EncodeBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    text: Optional[Union[str, List[str]]] = None
    input_ids: Optional[Union[List[int], List[List[int]]]] = None
    rid: Optional[Union[str, List[str]]] = None
    model: Optional[str] = None

    def check_supported(self) -> None:
        unsupported = sorted(k for k, v in (self.model_extra or {}).items() if v not in (None, False, [], {}, ""))
        if unsupported:
            raise bad_request(f"unsupported field(s) {', '.join(unsupported)}; supported: "
                              f"{', '.join(sorted(EncodeBody.model_fields))}")


def check_pooling_server(ctx: ServerContext, param: Optional[str] = None) -> None:
    """A 400 at once when the served model generates (it has no embeddings)."""
    if getattr(ctx.tokenizer_manager, "is_generation", True):
        raise APIError(wrong_model_kind_message(True, ctx.model_name), 400, param=param)


def check_prompt_count(prompts: Any) -> None:
    if isinstance(prompts, list) and len(prompts) > MAX_REQUESTS_PER_CALL and not isinstance(prompts[0], int):
        raise bad_request(f"this call sends {len(prompts)} prompts; the limit per call is "
                          f"{MAX_REQUESTS_PER_CALL}: split the batch")


async def run_encode(ctx: ServerContext, request: Optional[Request], text: Any = None, input_ids: Any = None,
                     rid: Any = None) -> Any:
    """Embedding results of the prompts; raises APIError (400 naming the problem, 503, ...)."""
    check_prompt_count(text if text is not None else input_ids)
    raw = await generate_once(ctx, make_encode_input(text, input_ids, rid), request, pooling=True)
    return to_embedding_results(raw)


async def _handle(request: Request) -> Response:
    ctx = get_ctx(request)
    body = validate_model(await read_json_object(request), EncodeBody)
    body.check_supported()
    ctx.check_model(body.model)
    check_pooling_server(ctx)
    return json_response(await run_encode(ctx, request, body.text, body.input_ids, body.rid))


# One route per HTTP method (unique OpenAPI operation ids), as in native_api.py.
@router.post("/encode")
async def encode(request: Request) -> Response:
    return await _handle(request)


@router.put("/encode")
async def encode_put(request: Request) -> Response:
    return await _handle(request)


@router.post("/classify")
async def classify(request: Request) -> Response:
    return await _handle(request)


@router.put("/classify")
async def classify_put(request: Request) -> Response:
    return await _handle(request)
