"""Running a GenerateReqInput from an HTTP handler: errors to HTTP statuses, disconnects to aborts.

- Non-streaming: the generation runs as a task raced against the client's disconnect; if the
  client leaves first the task is cancelled, which makes the tokenizer manager abort the request
  and free its KV slots (nobody would read the answer).
- Streaming: the first output is fetched before the response starts, so
  a request that is invalid or rejected (queue full) gets its 4xx/503 status, not a 200 stream.
- A scheduler abort that carries an HTTP status becomes that status (non-streaming) or an error
  event (streaming).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Optional

from fastapi import Request

from sglang.runtime.entrypoints.openai.errors import APIError, from_abort_reason
from sglang.runtime.entrypoints.server_context import ServerContext
from sglang.runtime.managers.generate_input import GenerateReqInput
from sglang.runtime.managers.tokenizer_manager import EngineDeadError

logger = logging.getLogger(__name__)

# HTTP status for a request whose client went away (never actually sent; nginx's convention).
CLIENT_CLOSED_STATUS = 499


def to_api_error(exc: BaseException) -> Optional[APIError]:
    """Map the runtime's exceptions to API errors; None for anything unexpected (a bug: 500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, EngineDeadError):
        return APIError(str(exc), 503)
    if isinstance(exc, ValueError):
        return APIError(str(exc), 400)
    return None


def abort_error_of(result: Any) -> Optional[APIError]:
    """The HTTP error of an aborted result: a dict, or a list whose items were all aborted."""
    if isinstance(result, dict):
        return from_abort_reason(result.get("meta_info", {}).get("finish_reason"))
    if isinstance(result, list) and result:
        errors = [abort_error_of(r) for r in result]
        if all(e is not None for e in errors):
            return errors[0]
    return None


async def _final_output(ctx: ServerContext, obj: GenerateReqInput, pooling: bool = False) -> Any:
    last = None
    try:
        async for out in ctx.tokenizer_manager.generate_request(obj, pooling=pooling):
            last = out
    except Exception as exc:
        error = to_api_error(exc)
        if error is None:
            raise
        raise error from None
    return last


async def generate_once(ctx: ServerContext, obj: GenerateReqInput, request: Optional[Request],
                        pooling: bool = False) -> Any:
    """The final result (a dict, or a list for batches / n > 1); raises APIError on failure.
    `pooling`: an encode request of an embedding / reward model (managers/embedding_requests.py)."""
    _log_request(ctx, obj)
    result = await _cancel_on_disconnect(request, _final_output(ctx, obj, pooling))
    error = abort_error_of(result)
    if error is not None:
        raise error
    _log_result(ctx, result)
    return result


async def generate_stream(ctx: ServerContext, obj: GenerateReqInput) -> AsyncIterator[Any]:
    """Cumulative outputs (dicts; tagged 'index' for batches / n > 1). The first output is
    fetched here, so errors before any output (invalid request, queue full) raise APIError now
    and the handler can answer with that status; later errors are raised by the iterator."""
    _log_request(ctx, obj)
    source = _translate_errors(ctx.tokenizer_manager.generate_request(obj))
    try:
        first = await source.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await source.aclose()
        raise
    error = abort_error_of(first)
    if error is not None:
        await source.aclose()
        raise error
    return _Prepended(first, source)


async def _translate_errors(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        async for out in source:
            yield out
    except Exception as exc:
        error = to_api_error(exc)
        if error is None:
            raise
        raise error from None
    finally:
        await source.aclose()


class _Prepended:
    """`first` then the rest of `rest`. A class rather than a generator so that aclose() closes
    `rest` (and so aborts the request) even if iteration never started."""

    _USED = object()

    def __init__(self, first: Any, rest: AsyncIterator[Any]):
        self._first = first if first is not None else self._USED
        self._rest = rest

    def __aiter__(self) -> "_Prepended":
        return self

    async def __anext__(self) -> Any:
        if self._first is not self._USED:
            first, self._first = self._first, self._USED
            return first
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        await self._rest.aclose()


async def _cancel_on_disconnect(request: Optional[Request], work: Awaitable[Any]) -> Any:
    if request is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()  # the tokenizer manager's finally sends the abort
    await asyncio.gather(task, return_exceptions=True)
    # An expected event, not a failure: answered (to nobody; the server drops writes to a closed
    # connection) through the normal error path, so nothing logs a traceback.
    logger.info("client disconnected before the response to %s %s was ready; the request was aborted",
                request.method, request.url.path)
    raise APIError("the client disconnected before the response was ready", CLIENT_CLOSED_STATUS)


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only disconnects arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _log_request(ctx: ServerContext, obj: GenerateReqInput) -> None:
    if ctx.server_args.log_requests:
        text = obj.text if obj.text is not None else obj.input_ids
        logger.info("request rid=%s stream=%s params=%s input=%.500r", obj.rid, obj.stream,
                    obj.sampling_params, text)


def _log_result(ctx: ServerContext, result: Any) -> None:
    if ctx.server_args.log_requests:
        outs = result if isinstance(result, list) else [result]
        for out in outs:
            logger.info("finished rid=%s meta=%s output=%.500r", out["meta_info"].get("id"),
                        {k: v for k, v in out["meta_info"].items() if "logprob" not in k}, out["text"])
