"""POST /v1/chat/completions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from fastapi import Request
from fastapi.responses import Response

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.openai import results
from sglang.runtime.entrypoints.openai.chat_outputs import ChoiceStream, OutputParsers, finish_reason
from sglang.runtime.entrypoints.openai.chat_messages import (
    ChatMedia,
    flatten_with_marks,
    message_dicts,
    render_prompt,
    tokenize_prompt,
)
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.openai.protocol import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    ChatStreamChoice,
    ChoiceLogprobs,
    DeltaMessage,
    new_id,
)
from sglang.runtime.entrypoints.openai.sampling import (
    LogprobOptions,
    chat_logprobs,
    choose_n,
    resolve_max_tokens,
    sampling_params,
    wants_usage_chunk,
)
from sglang.runtime.entrypoints.openai.stream_state import StreamState
from sglang.runtime.entrypoints.openai.tool_request import ToolPlan, plan_tools, with_tools
from sglang.runtime.entrypoints.request_body import read_model
from sglang.runtime.entrypoints.request_runner import generate_once, generate_stream
from sglang.runtime.entrypoints.server_context import ServerContext
from sglang.runtime.entrypoints.streaming import SSE_DONE, SSEResponse, sse_event
from sglang.runtime.managers.generate_input import GenerateReqInput
from sglang.runtime.reasoning.grammar import schema_after_reasoning_ebnf
from sglang.runtime.reasoning.registry import get_reasoning_parser

# OpenAI answers max_tokens / max_completion_tokens 0 on chat with a 400: a reply needs a token.
MIN_CHAT_TOKENS = 1


@dataclass
class ChatPlan:
    obj: GenerateReqInput
    rid: str
    n: int
    logprobs: LogprobOptions
    parsers: OutputParsers


async def handle_chat(ctx: ServerContext, request: Request) -> Response:
    req = await read_model(request, ChatCompletionRequest)
    plan = await ctx.tokenizer_manager.run_tokenization(plan_chat, ctx, req)  # off the event loop
    response_id = f"chatcmpl-{plan.rid}"
    if not req.stream:
        result = await generate_once(ctx, plan.obj, request)
        return json_response(_response(ctx, plan, result, response_id))
    outputs = await generate_stream(ctx, plan.obj)
    return SSEResponse(_stream(ctx, plan, outputs, response_id, wants_usage_chunk(req)), source=outputs)


def plan_chat(ctx: ServerContext, req: ChatCompletionRequest) -> ChatPlan:
    lora = ctx.check_model(req.model)  # a LoRA adapter named by the model field, or None
    if req.max_tokens is not None and req.max_completion_tokens is not None:
        raise bad_request("give max_completion_tokens or max_tokens, not both", param="max_completion_tokens")
    n = choose_n(req)
    logprobs = chat_logprobs(req.logprobs, req.top_logprobs)
    tok = ctx.tokenizer()
    args = ctx.server_args
    tools = plan_tools(req, args.tool_call_parser, ctx.chat_template or getattr(tok, "chat_template", None) or "",
                       args.grammar_backend)
    prompt, media = _render(ctx, tok, req, tools)
    ctx.check_prompt_size(prompt, "messages")
    mm_inputs = None
    if media is not None:
        try:
            ids, mm_inputs = ctx.tokenizer_manager.request_tokenizer.process_media(prompt, media.images, media.videos)
        except ValueError as exc:
            raise bad_request(str(exc), param="messages") from None
    else:
        ids = tokenize_prompt(tok, prompt)
    limit, param = ((req.max_completion_tokens, "max_completion_tokens") if req.max_completion_tokens is not None
                    else (req.max_tokens, "max_tokens"))
    max_new = resolve_max_tokens(limit, len(ids), ctx.context_len, None, param, minimum=MIN_CHAT_TOKENS)
    rid = req.rid or new_id("")
    params = sampling_params(req, max_new, n)
    if tools is not None:
        _constrain(params, tools, tok)
    parsers = OutputParsers(tools)
    # A reply constrained to calls has no thinking before them: nothing to split off.
    parsers.reasoning = None if parsers.calls_only else _reasoning(ctx, req)
    if parsers.reasoning is not None and "json_schema" in params and args.grammar_backend == "xgrammar":
        params["ebnf"] = _schema_after_reasoning(parsers.reasoning, params.pop("json_schema"))
    obj = GenerateReqInput(
        input_ids=ids, sampling_params=params, rid=rid,
        return_logprob=logprobs.return_logprob, logprob_start_len=logprobs.logprob_start_len,
        top_logprobs_num=logprobs.top_logprobs_num, return_text_in_logprobs=True, stream=bool(req.stream),
        mm_inputs=mm_inputs, lora_path=lora,
    )
    return ChatPlan(obj, rid, n, logprobs, parsers)


def _constrain(params: Dict[str, Any], tools: ToolPlan, tok: Any) -> None:
    """The tool grammar, and special-token call markers kept in the text so they can be parsed."""
    if tools.grammar is not None:
        if any(k in params for k in ("regex", "json_schema", "ebnf", "lark")):
            raise bad_request(f"tool_choice {tools.choice!r} constrains the reply to tool calls; it cannot be "
                              f"combined with response_format, regex, json_schema, ebnf or lark", param="tool_choice")
        params.update(tools.grammar)
    specials = set(getattr(tok, "all_special_tokens", ())) | set(getattr(tok, "added_tokens_encoder", {}))
    if any(m in specials for m in tools.fmt.markers) and "skip_special_tokens" not in params:
        params["skip_special_tokens"] = False


def _schema_after_reasoning(parser: Any, schema: str) -> str:
    """response_format constrains the answer, not the thinking before it."""
    try:
        return schema_after_reasoning_ebnf(parser, schema)
    except (ValueError, RuntimeError) as exc:
        raise bad_request(f"invalid JSON schema in response_format: {exc}", param="response_format") from None


def _reasoning(ctx: ServerContext, req: ChatCompletionRequest) -> Any:
    name = ctx.server_args.reasoning_parser
    thinking = (req.chat_template_kwargs or {}).get("enable_thinking", True)
    if name is None or req.separate_reasoning is False or thinking is False:
        return None
    return get_reasoning_parser(name)


def _render(ctx: ServerContext, tok: Any, req: ChatCompletionRequest,
            tools: Optional[ToolPlan] = None) -> Tuple[str, Optional[ChatMedia]]:
    """The prompt text, and the conversation's images/videos (None when it has none). A template
    that drops image parts (string-content templates) gets the content flattened with marks."""
    mm = getattr(ctx.tokenizer_manager, "mm_processor", None)
    media = ChatMedia(mm.image_text, mm.video_text if mm.supports_video else None) if mm is not None else None
    messages = with_tools(message_dicts(req.messages, media), tools)
    if media is not None and not (media.images or media.videos):
        media, messages = None, with_tools(message_dicts(req.messages), tools)
    template_tools = tools.template_tool_list() if tools is not None and tools.template_tools else None
    args = (ctx.chat_template, bool(req.continue_final_message), req.chat_template_kwargs, template_tools)
    prompt = render_prompt(tok, messages, *args)
    if media is not None and not _marks_match(prompt, mm, media):
        prompt = render_prompt(tok, flatten_with_marks(messages, media), *args)
    return prompt, media


def _marks_match(prompt: str, mm: Any, media: ChatMedia) -> bool:
    videos = prompt.count(mm.video_placeholder) if mm.video_placeholder else 0
    return prompt.count(mm.image_placeholder) == len(media.images) and videos == len(media.videos)


def _response(ctx: ServerContext, plan: ChatPlan, result: Any, response_id: str) -> ChatCompletionResponse:
    outputs = result if isinstance(result, list) else [result]
    choices = []
    for i, out in enumerate(outputs):
        reason, matched = results.finish_fields(out["meta_info"])
        logprobs = (ChoiceLogprobs(content=results.chat_logprobs(out["meta_info"]))
                    if plan.logprobs.return_logprob else None)
        message, has_calls = (plan.parsers.message(out["text"]) if plan.parsers.active
                              else (ChatMessageOut(content=out["text"]), False))
        choices.append(ChatCompletionChoice(index=i, message=message, logprobs=logprobs,
                                            finish_reason=finish_reason(reason, has_calls), matched_stop=matched))
    return ChatCompletionResponse(id=response_id, model=ctx.model_name, choices=choices,
                                  usage=results.usage(outputs, plan.n))


def _chunk(ctx: ServerContext, response_id: str, choices: List[ChatStreamChoice], usage=None) -> bytes:
    return sse_event(ChatCompletionChunk(id=response_id, model=ctx.model_name, choices=choices,
                                         usage=usage).model_dump())


async def _stream(ctx: ServerContext, plan: ChatPlan, outputs: AsyncIterator[Any], response_id: str,
                  include_usage: bool) -> AsyncIterator[bytes]:
    state = StreamState()
    streams = {i: ChoiceStream(plan.parsers) for i in range(plan.n)} if plan.parsers.active else None
    # The role comes first, once per choice, before any content.
    yield _chunk(ctx, response_id, [ChatStreamChoice(index=i, delta=DeltaMessage(role="assistant", content=""))
                                    for i in range(plan.n)])
    try:
        async for out in outputs:
            error = state.abort_error(out)
            if error is not None:
                yield sse_event(error.openai_body())
                break
            choice = _stream_choice(plan, state, out.get("index", 0), out, streams)
            if choice is not None:
                yield _chunk(ctx, response_id, [choice])
        else:
            if include_usage:
                yield _chunk(ctx, response_id, [], results.usage(state.final_outputs(), plan.n))
    except APIError as err:
        yield sse_event(err.openai_body())
    yield SSE_DONE


def _stream_choice(plan: ChatPlan, state: StreamState, index: int, out: Dict[str, Any],
                   streams: Optional[Dict[int, ChoiceStream]]) -> Optional[ChatStreamChoice]:
    meta = out["meta_info"]
    delta = state.text_delta(index, out["text"])
    logprobs = None
    if plan.logprobs.return_logprob:
        content = results.chat_logprobs(meta, state.logprobs_sent(index))
        state.advance_logprobs(index, results.num_output_logprobs(meta))
        logprobs = ChoiceLogprobs(content=content) if content else None
    reason, matched = results.finish_fields(meta)
    if reason is not None:
        state.finish(index, out)
    message = DeltaMessage(content=delta or None)
    if streams is not None:
        stream = streams[index]
        message = stream.feed(out["text"], final=reason is not None) or DeltaMessage()
        reason = finish_reason(reason, stream.has_calls)
    if message == DeltaMessage() and reason is None and logprobs is None:
        return None
    return ChatStreamChoice(index=index, delta=message, logprobs=logprobs, finish_reason=reason, matched_stop=matched)
