"""Upstream SGLang's native routes (everything outside /v1)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Any, List, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

import sglang
from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.native_generate import handle_generate
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.request_body import read_json_object, read_model, validate_model
from sglang.runtime.entrypoints.request_runner import generate_once, to_api_error
from sglang.runtime.entrypoints.server_context import ServerContext, get_ctx
from sglang.runtime.managers.generate_input import GenerateReqInput
from sglang.runtime.metrics.collector import CONTENT_TYPE as METRICS_CONTENT_TYPE

logger = logging.getLogger(__name__)

HEALTH_GENERATE_TIMEOUT_S = 20.0
_SECRET_ARGS = ("api_key",)

router = APIRouter()


class TokenizeBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    prompt: Optional[Union[str, List[str]]] = None
    text: Optional[Union[str, List[str]]] = None  # alias of prompt
    add_special_tokens: bool = True
    model: Optional[str] = None


class DetokenizeBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    tokens: Union[List[int], List[List[int]]]
    skip_special_tokens: bool = True
    model: Optional[str] = None


class ConcatAppendBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    parent: Union[str, List[int]]
    children: List[Union[str, List[int]]]
    prefill_children: bool = True  # first cache tokens never computed (e.g. each child's last one)


class UpstreamConcatBody(BaseModel):
    """What upstream's RuntimeEndpoint.concatenate_and_append posts: ids of its frontend states."""
    model_config = ConfigDict(strict=True, extra="ignore")
    src_rids: List[str] = Field(min_length=1)
    dst_rid: str = Field(min_length=1)


class AbortBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    rid: Optional[str] = None
    abort_all: bool = False


# One route per HTTP method throughout: a route with several methods gives every method the
# same OpenAPI operation id, and /docs then warns "Duplicate Operation ID".

# ---------------------------------------------------------------------------------- generation
@router.post("/generate")
@router.put("/generate")
async def generate(request: Request) -> Response:
    return await handle_generate(get_ctx(request), request)


@router.post("/abort_request")
async def abort_request(request: Request) -> Response:
    body = await read_model(request, AbortBody)
    if not body.abort_all and not body.rid:
        raise bad_request("give the 'rid' of the request to abort, or set 'abort_all': true", param="rid")
    tm = get_ctx(request).tokenizer_manager
    if body.abort_all:
        tm.abort_request("")
        return json_response({"success": True})
    # n > 1 and batched OpenAI calls run as children '<rid>-<i>': aborting the parent ends them all.
    children = [rid for rid in list(tm.states) if rid.startswith(body.rid + "-")]
    for rid in [body.rid, *children]:
        tm.abort_request(rid)
    return json_response({"success": True})


# ---------------------------------------------------------------------------------- health
@router.get("/health")
async def health(request: Request) -> Response:
    ctx = get_ctx(request)
    tm = ctx.tokenizer_manager
    if tm.dead_error is not None:
        raise APIError(tm.dead_error, 503)
    dead = [name for name, proc in tm.procs if not proc.is_alive()]
    if dead:
        raise APIError(f"the {dead[0]} process has exited; the server is shutting down", 503)
    if not ctx.ready:
        raise APIError("the server is starting (warm-up not finished); retry shortly", 503)
    return Response(status_code=200)


@router.get("/health_generate")
async def health_generate(request: Request) -> Response:
    """Healthy only if a one-token generation (an embedding model: one encode) completes end to end."""
    ctx = get_ctx(request)
    pooling = not getattr(ctx.tokenizer_manager, "is_generation", True)
    params = {"max_new_tokens": 0} if pooling else {"max_new_tokens": 1, "temperature": 0}
    obj = GenerateReqInput(input_ids=[0], sampling_params=params, rid=f"health-{uuid.uuid4().hex}")
    try:
        await asyncio.wait_for(generate_once(ctx, obj, None, pooling=pooling), HEALTH_GENERATE_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise APIError(f"a 1-token generation did not finish within {HEALTH_GENERATE_TIMEOUT_S:.0f} s", 503) from None
    except APIError as err:
        raise APIError(f"health generation failed: {err.message}", 503) from None
    return Response(status_code=200)


# ---------------------------------------------------------------------------------- info
@router.get("/get_model_info")
async def get_model_info(request: Request) -> Response:
    return json_response(get_ctx(request).tokenizer_manager.model_info())


@router.get("/get_server_info")
@router.get("/server_info")
async def get_server_info(request: Request) -> Response:
    ctx = get_ctx(request)
    state = await _server_state(ctx)
    args = {k: v for k, v in dataclasses.asdict(ctx.server_args).items() if k not in _SECRET_ARGS}
    return json_response({**args, **state, "internal_states": [state], "version": sglang.__version__})


async def _server_state(ctx: ServerContext) -> dict:
    try:
        return await ctx.tokenizer_manager.get_server_state()
    except Exception as exc:
        error = to_api_error(exc)
        if error is None:
            raise
        raise error from None


@router.get("/flush_cache")
@router.post("/flush_cache")
async def flush_cache(request: Request) -> Response:
    ctx = get_ctx(request)
    try:
        reply = await ctx.tokenizer_manager.flush_cache()
    except Exception as exc:
        raise (to_api_error(exc) or exc) from None
    if not reply.success:
        raise bad_request(f"cache not flushed: {reply.message}")
    return json_response({"success": True, "message": reply.message})


@router.post("/concat_and_append")
async def concat_and_append(request: Request) -> Response:
    """Cache parent + each child's continuation, built by copying the children's cached KV."""
    ctx = get_ctx(request)
    body = await read_model(request, ConcatAppendBody)
    try:
        result = await ctx.tokenizer_manager.concat_and_append(body.parent, body.children, body.prefill_children)
    except Exception as exc:
        raise (to_api_error(exc) or exc) from None
    return json_response(result)


@router.post("/concate_and_append_request")
async def concate_and_append_request(request: Request) -> Response:
    """Upstream's join route, so its client goes on instead of failing on a 404. The ids it sends
    name its frontend states, which its /generate calls never pass as rids, so they resolve to
    no cached sequence here and nothing is copied: the parent's next request reuses the cached
    prefix through the radix cache as usual. /concat_and_append copies KV given texts or ids."""
    body = await read_model(request, UpstreamConcatBody)
    logger.debug("concate_and_append_request for %d state(s) into %s: nothing to copy",
                 len(body.src_rids), body.dst_rid)
    return json_response({"success": True, "copied_tokens": 0,
                          "message": "the rids name frontend states, not requests this server holds, so "
                                     "no KV was copied; the joined text is computed on its next request "
                                     "(POST /concat_and_append with the texts copies the children's KV)"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    ctx = get_ctx(request)
    if ctx.metrics is None:
        raise APIError("metrics are disabled; start the server with --enable-metrics", 404)
    try:
        ctx.metrics.update_server_state(await ctx.tokenizer_manager.get_server_state())
    except Exception as exc:  # request-level series are still worth serving
        logger.warning("metrics: scheduler state unavailable (%s)", exc)
    return Response(ctx.metrics.render(), media_type=METRICS_CONTENT_TYPE)


# ---------------------------------------------------------------------------------- tokenizer
@router.post("/tokenize")
@router.post("/v1/tokenize")
async def tokenize(request: Request) -> Response:
    ctx = get_ctx(request)
    body = validate_model(await read_json_object(request), TokenizeBody)
    ctx.check_model(body.model)
    prompt = body.prompt if body.prompt is not None else body.text
    if prompt is None:
        raise bad_request("give the text to tokenize as 'prompt'", param="prompt")
    tok = ctx.tokenizer()
    texts = [prompt] if isinstance(prompt, str) else prompt
    # In the tokenization pool: a big text would otherwise stall every other route (see tokenization_pool).
    ids = await ctx.tokenizer_manager.run_tokenization(_encode_all, tok, texts, body.add_special_tokens)
    if isinstance(prompt, str):
        return json_response({"tokens": ids[0], "count": len(ids[0]), "max_model_len": ctx.context_len})
    return json_response({"tokens": ids, "count": [len(x) for x in ids], "max_model_len": ctx.context_len})


def _encode_all(tok: Any, texts: List[str], add_special_tokens: bool) -> List[List[int]]:
    return [list(tok.encode(t, add_special_tokens=add_special_tokens)) for t in texts]


@router.post("/detokenize")
@router.post("/v1/detokenize")
async def detokenize(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_model(request, DetokenizeBody)
    ctx.check_model(body.model)
    tok = ctx.tokenizer()
    single = not body.tokens or isinstance(body.tokens[0], int)
    seqs = [body.tokens] if single else body.tokens
    vocab = ctx.tokenizer_manager.vocab_size
    for seq in seqs:
        bad = [t for t in seq if not 0 <= t < vocab]
        if bad:
            raise bad_request(f"token ids must be in [0, {vocab}), got {bad[0]}", param="tokens")
    texts = await ctx.tokenizer_manager.run_tokenization(
        lambda: [tok.decode(seq, skip_special_tokens=body.skip_special_tokens) for seq in seqs])
    return json_response({"text": texts[0] if single else texts})
