"""Upstream's LoRA adapter routes: /load_lora_adapter and /unload_lora_adapter (runtime/lora/)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai.errors import bad_request
from sglang.runtime.entrypoints.request_body import read_model
from sglang.runtime.entrypoints.request_runner import to_api_error
from sglang.runtime.entrypoints.server_context import get_ctx

router = APIRouter()


class LoadLoraBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    lora_name: str
    lora_path: str


class UnloadLoraBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    lora_name: str


def _reply(reply, what: str) -> Response:
    if not reply.success:
        raise bad_request(f"{what} failed: {reply.message}", param="lora_name")
    return json_response({"success": True, "message": reply.message, "loaded_adapters": reply.loaded})


@router.post("/load_lora_adapter")
async def load_lora_adapter(request: Request) -> Response:
    body = await read_model(request, LoadLoraBody)
    try:
        reply = await get_ctx(request).tokenizer_manager.load_lora_adapter(body.lora_name, body.lora_path)
    except Exception as exc:
        raise (to_api_error(exc) or exc) from None
    return _reply(reply, f"loading LoRA adapter {body.lora_name!r}")


@router.post("/unload_lora_adapter")
async def unload_lora_adapter(request: Request) -> Response:
    body = await read_model(request, UnloadLoraBody)
    try:
        reply = await get_ctx(request).tokenizer_manager.unload_lora_adapter(body.lora_name)
    except Exception as exc:
        raise (to_api_error(exc) or exc) from None
    return _reply(reply, f"unloading LoRA adapter {body.lora_name!r}")
