"""The /v1 routes of the OpenAI-compatible API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai.errors import APIError
from sglang.runtime.entrypoints.openai.protocol import ModelCard, ModelList
from sglang.runtime.entrypoints.openai.serving_chat import handle_chat
from sglang.runtime.entrypoints.openai.serving_completions import handle_completions
from sglang.runtime.entrypoints.openai.serving_embeddings import handle_embeddings
from sglang.runtime.entrypoints.server_context import ServerContext, get_ctx

router = APIRouter(prefix="/v1")


def _card(ctx: ServerContext) -> ModelCard:
    return ModelCard(id=ctx.model_name, created=ctx.created, root=ctx.server_args.model_path,
                     max_model_len=ctx.context_len)


@router.get("/models")
async def list_models(request: Request) -> Response:
    return json_response(ModelList(data=[_card(get_ctx(request))]))


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> Response:
    ctx = get_ctx(request)
    # Names that are paths arrive with or without their leading slash (".../models//abs/path").
    if model_id.lstrip("/") != ctx.model_name.lstrip("/"):
        raise APIError(f"the model {model_id!r} does not exist; this server serves {ctx.model_name!r}", 404,
                       param="model", code="model_not_found")
    return json_response(_card(ctx))


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await handle_completions(get_ctx(request), request)


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await handle_chat(get_ctx(request), request)


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await handle_embeddings(get_ctx(request), request)
