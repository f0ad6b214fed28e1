"""POST /v1/completions: prompts as text, a list of texts, token ids, or lists of token ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional

from fastapi import Request
from fastapi.responses import Response

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai import results
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.openai.protocol import (
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    new_id,
)
from sglang.runtime.entrypoints.openai.sampling import (
    LogprobOptions,
    choose_n,
    completion_logprobs,
    resolve_max_tokens,
    sampling_params,
    wants_usage_chunk,
)
from sglang.runtime.entrypoints.openai.stream_state import StreamState
from sglang.runtime.entrypoints.openai.text_offsets import TextOffsets
from sglang.runtime.entrypoints.request_body import read_model
from sglang.runtime.entrypoints.request_runner import generate_once, generate_stream
from sglang.runtime.entrypoints.server_context import MAX_REQUESTS_PER_CALL, ServerContext
from sglang.runtime.entrypoints.streaming import SSE_DONE, SSEResponse, sse_event
from sglang.runtime.managers.generate_input import GenerateReqInput

# OpenAI's default for /v1/completions when max_tokens is absent.
DEFAULT_MAX_TOKENS = 16


@dataclass
class CompletionPlan:
    obj: GenerateReqInput
    rid: str
    prompt_texts: List[str]  # for echo
    n: int
    logprobs: LogprobOptions
    echo: bool
    # How the returned text was decoded, for text_offset: the echoed prompt of a text prompt is
    # the caller's string (no BOS text); the output follows the request's decoding options.
    prompt_skips_special: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True


async def handle_completions(ctx: ServerContext, request: Request) -> Response:
    req = await read_model(request, CompletionRequest)
    plan = await ctx.tokenizer_manager.run_tokenization(plan_completion, ctx, req)  # off the event loop
    response_id = f"cmpl-{plan.rid}"
    if not req.stream:
        result = await generate_once(ctx, plan.obj, request)
        return json_response(_response(ctx, plan, result, response_id))
    outputs = await generate_stream(ctx, plan.obj)
    return SSEResponse(_stream(ctx, plan, outputs, response_id, wants_usage_chunk(req)), source=outputs)


def plan_completion(ctx: ServerContext, req: CompletionRequest) -> CompletionPlan:
    lora = ctx.check_model(req.model)  # a LoRA adapter named by the model field, or None
    if req.best_of is not None and req.best_of != 1:
        raise bad_request("best_of is not supported; use n to get several completions", param="best_of")
    if req.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported by this server", param="suffix")
    n = choose_n(req)
    echo = bool(req.echo)
    count = prompt_count(req.prompt)
    if count * n > MAX_REQUESTS_PER_CALL:
        raise bad_request(f"{count} prompts x n={n} exceeds {MAX_REQUESTS_PER_CALL} completions per call; "
                          f"split the request", param="prompt")
    prompts_ids, texts, batch = _prompts(ctx, req.prompt)
    params = [sampling_params(req, resolve_max_tokens(req.max_tokens, len(ids), ctx.context_len,
                                                      DEFAULT_MAX_TOKENS), n) for ids in prompts_ids]
    logprobs = completion_logprobs(req.logprobs, echo)
    rid = req.rid or new_id("")
    obj = GenerateReqInput(
        input_ids=prompts_ids if batch else prompts_ids[0], sampling_params=params if batch else params[0],
        rid=[f"{rid}-{i}" for i in range(len(prompts_ids))] if batch else rid,
        return_logprob=logprobs.return_logprob, logprob_start_len=logprobs.logprob_start_len,
        top_logprobs_num=logprobs.top_logprobs_num, return_text_in_logprobs=True, stream=bool(req.stream),
        lora_path=lora,
    )
    return CompletionPlan(obj, rid, texts, n, logprobs, echo,
                          prompt_skips_special=isinstance(req.prompt, str) or isinstance(req.prompt[0], str),
                          skip_special_tokens=req.skip_special_tokens is not False,
                          spaces_between_special_tokens=req.spaces_between_special_tokens is not False)


def prompt_count(prompt: Any) -> int:
    """How many prompts `prompt` holds: a string or a list of token ids is one prompt; a list of
    strings or of token-id lists holds one per item."""
    if isinstance(prompt, str) or not prompt or isinstance(prompt[0], int):
        return 1
    return len(prompt)


def _prompts(ctx: ServerContext, prompt: Any):
    """(token ids per prompt, text per prompt, is_batch)."""
    if isinstance(prompt, str):
        tok = ctx.tokenizer()
        ctx.check_prompt_size(prompt, "prompt")
        return [list(tok.encode(prompt))], [prompt], False
    if not prompt:
        raise bad_request("prompt must not be empty", param="prompt")
    if isinstance(prompt[0], int):
        return [list(prompt)], [_decode(ctx, prompt)], False
    if isinstance(prompt[0], str):
        tok = ctx.tokenizer()
        for p in prompt:
            ctx.check_prompt_size(p, "prompt")
        return [list(tok.encode(p)) for p in prompt], list(prompt), True
    if any(not ids for ids in prompt):
        raise bad_request("every token-id prompt must have at least one token", param="prompt")
    return [list(ids) for ids in prompt], [_decode(ctx, ids) for ids in prompt], True


def _decode(ctx: ServerContext, ids: List[int]) -> str:
    tok = ctx.tokenizer_manager.tokenizer
    vocab = ctx.tokenizer_manager.vocab_size
    if any(not 0 <= t < vocab for t in ids):
        raise bad_request(f"prompt token ids must be in [0, {vocab})", param="prompt")
    return tok.decode(ids) if tok is not None else ""


def _echo_prefix(plan: CompletionPlan, index: int) -> str:
    return plan.prompt_texts[index // plan.n] if plan.echo else ""


def _output_offsets(ctx: ServerContext, plan: CompletionPlan, start: int) -> TextOffsets:
    return TextOffsets(ctx.tokenizer_manager.tokenizer, start, plan.skip_special_tokens,
                       plan.spaces_between_special_tokens)


def _logprobs(ctx: ServerContext, plan: CompletionPlan, meta: Dict[str, Any], echoed: Optional[str],
              output: TextOffsets, out_from: int, limit: int) -> CompletionLogprobs:
    """Logprobs of one piece of a choice: the echoed prompt's tokens if `echoed` (the prompt text)
    is given, then the output tokens from index `out_from`. `limit`: the returned text's length
    so far, which no offset passes."""
    tokens, tops = results.completion_entries(meta, echoed is not None, out_from)
    offsets: List[int] = []
    if echoed is not None:
        prompt = TextOffsets(ctx.tokenizer_manager.tokenizer, 0, plan.prompt_skips_special)
        offsets = prompt.take(meta.get("input_token_logprobs") or [], len(echoed))
    offsets += output.take(tokens[len(offsets):], limit)
    return results.completion_logprobs(tokens, tops, offsets)


def _choice(ctx: ServerContext, plan: CompletionPlan, index: int, out: Dict[str, Any]) -> CompletionChoice:
    meta = out["meta_info"]
    prefix = _echo_prefix(plan, index)
    text = prefix + out["text"]
    reason, matched = results.finish_fields(meta)
    logprobs = None
    if plan.logprobs.return_logprob:
        output = _output_offsets(ctx, plan, len(prefix))
        logprobs = _logprobs(ctx, plan, meta, prefix if plan.echo else None, output, 0, len(text))
    return CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=reason, matched_stop=matched)


def _response(ctx: ServerContext, plan: CompletionPlan, result: Any, response_id: str) -> CompletionResponse:
    outputs = result if isinstance(result, list) else [result]
    return CompletionResponse(id=response_id, model=ctx.model_name,
                              choices=[_choice(ctx, plan, i, out) for i, out in enumerate(outputs)],
                              usage=results.usage(outputs, plan.n))


async def _stream(ctx: ServerContext, plan: CompletionPlan, outputs: AsyncIterator[Any], response_id: str,
                  include_usage: bool) -> AsyncIterator[bytes]:
    state = StreamState()
    try:
        async for out in outputs:
            index = out.get("index", 0)
            error = state.abort_error(out)
            if error is not None:
                yield sse_event(error.openai_body())
                break
            choice = _stream_choice(ctx, plan, state, index, out)
            if choice is not None:
                yield sse_event(CompletionChunk(id=response_id, model=ctx.model_name, choices=[choice]).model_dump())
        else:
            if include_usage:
                usage = results.usage(state.final_outputs(), plan.n)
                yield sse_event(CompletionChunk(id=response_id, model=ctx.model_name, choices=[], usage=usage).model_dump())
    except APIError as err:
        yield sse_event(err.openai_body())
    yield SSE_DONE


def _stream_choice(ctx: ServerContext, plan: CompletionPlan, state: StreamState, index: int,
                   out: Dict[str, Any]) -> Optional[CompletionChoice]:
    meta = out["meta_info"]
    first = state.is_first(index)
    delta = state.text_delta(index, out["text"])
    prefix = _echo_prefix(plan, index)
    echo_now = plan.echo and first
    if echo_now:
        delta = prefix + delta
    logprobs = None
    if plan.logprobs.return_logprob:
        output = state.offsets(index, lambda: _output_offsets(ctx, plan, len(prefix)))
        logprobs = _logprobs(ctx, plan, meta, prefix if echo_now else None, output, state.logprobs_sent(index),
                             len(prefix) + state.text_sent(index))
        state.advance_logprobs(index, results.num_output_logprobs(meta))
    reason, matched = results.finish_fields(meta)
    if reason is not None:
        state.finish(index, out)
    if not delta and reason is None and not (logprobs and logprobs.tokens):
        return None
    return CompletionChoice(index=index, text=delta, logprobs=logprobs, finish_reason=reason, matched_stop=matched)
