"""The native `/generate` route: upstream SGLang's request body, answered whole or as SSE.

Streamed chunks carry the cumulative `text` and `meta_info` of their request (tagged `index` for
batches and n > 1), one `data: {...}` line each, ending with `data: [DONE]`.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, List, Optional, Union

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.request_body import read_json_object, validate_model
from sglang.runtime.entrypoints.request_runner import abort_error_of, generate_once, generate_stream
from sglang.runtime.entrypoints.server_context import MAX_N, MAX_REQUESTS_PER_CALL, ServerContext
from sglang.runtime.entrypoints.streaming import SSE_DONE, SSEResponse, sse_event
from sglang.runtime.managers.generate_input import GenerateReqInput


class GenerateBody(BaseModel):
    """Types of the fields we support; upstream-only fields are tolerated while unset/false."""

    model_config = ConfigDict(strict=True, extra="allow")
    text: Optional[Union[str, List[str]]] = None
    input_ids: Optional[Union[List[int], List[List[int]]]] = None
    sampling_params: Optional[Union[Dict[str, Any], List[Dict[str, Any]]]] = None
    rid: Optional[Union[str, List[str]]] = None
    return_logprob: Optional[Union[bool, List[bool]]] = None
    logprob_start_len: Optional[Union[int, List[int]]] = None
    top_logprobs_num: Optional[Union[int, List[int]]] = None
    token_ids_logprob: Optional[Union[List[int], List[List[int]]]] = None
    return_text_in_logprobs: Optional[bool] = None
    stream: Optional[bool] = None
    image_data: Optional[Any] = None  # text-only models refuse it with a 400
    video_data: Optional[Any] = None
    lora_path: Optional[Union[str, List[Optional[str]]]] = None  # LoRA adapter name(s)

    def to_input(self) -> GenerateReqInput:
        unsupported = sorted(k for k, v in (self.model_extra or {}).items() if v not in (None, False, [], {}, ""))
        if unsupported:
            raise bad_request(f"unsupported field(s) {', '.join(unsupported)}; supported: "
                              f"{', '.join(sorted(GenerateBody.model_fields))}")
        return GenerateReqInput(
            text=self.text, input_ids=self.input_ids, sampling_params=self.sampling_params, rid=self.rid,
            return_logprob=_or(self.return_logprob, False), logprob_start_len=_or(self.logprob_start_len, -1),
            top_logprobs_num=_or(self.top_logprobs_num, 0), token_ids_logprob=self.token_ids_logprob,
            return_text_in_logprobs=bool(self.return_text_in_logprobs), stream=bool(self.stream),
            image_data=self.image_data, video_data=self.video_data, lora_path=self.lora_path,
        )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def check_request_count(obj: GenerateReqInput) -> None:
    """Bound what one call can queue: n per prompt, and prompts x n overall."""
    params = obj.sampling_params if isinstance(obj.sampling_params, list) else [obj.sampling_params or {}]
    largest_n = 1
    for sp in params:
        n = sp.get("n", 1) if isinstance(sp, dict) else 1
        if isinstance(n, int) and not isinstance(n, bool):
            if n > MAX_N:
                raise bad_request(f"n must be <= {MAX_N}, got {n}", param="n")
            largest_n = max(largest_n, n)
    prompts = obj.text if obj.text is not None else obj.input_ids
    count = len(prompts) if obj.is_batch() and prompts else 1
    if count * largest_n > MAX_REQUESTS_PER_CALL:
        raise bad_request(f"this call asks for {count} prompts x n={largest_n} generations; the limit per "
                          f"call is {MAX_REQUESTS_PER_CALL}: split the batch")


async def handle_generate(ctx: ServerContext, request: Request) -> Response:
    body = validate_model(await read_json_object(request), GenerateBody)
    obj = body.to_input()
    check_request_count(obj)
    if not obj.stream:
        return json_response(await generate_once(ctx, obj, request))
    outputs = await generate_stream(ctx, obj)
    return SSEResponse(_sse(outputs), source=outputs)


async def _sse(outputs: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Chunks until done; an abort (client abort, scheduler rejection) ends the stream with an
    error event, as does a runtime failure."""
    try:
        async for out in outputs:
            error = abort_error_of(out)
            if error is not None:
                yield sse_event({"error": error.body()})
                break
            yield sse_event(out)
    except APIError as err:
        yield sse_event({"error": err.body()})
    yield SSE_DONE
