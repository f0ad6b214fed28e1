"""OpenAI request fields -> SGLang sampling params, token budgets and logprob options.

Range checks of the sampling values themselves (temperature, top_p, penalties, ...) stay in
SamplingParams.verify, the one place that knows them; this module handles what only the OpenAI
surface has: max_tokens vs the context window, n, response_format, logprob counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional

from sglang.runtime.entrypoints.openai.errors import bad_request
from sglang.runtime.entrypoints.openai.protocol import ResponseFormat, SamplingFields
from sglang.runtime.entrypoints.server_context import MAX_N

# OpenAI's documented limit for top_logprobs (chat); used for completions' `logprobs` too.
MAX_TOP_LOGPROBS = 20
JSON_OBJECT_SCHEMA = '{"type": "object"}'

# OpenAI name -> SGLang sampling-param name, for fields passed through unchanged otherwise.
_RENAMED = {"min_tokens": "min_new_tokens"}
_PASSTHROUGH = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias", "seed",
                "stop", "top_k", "min_p", "min_tokens", "repetition_penalty", "ignore_eos", "no_stop_trim",
                "skip_special_tokens", "spaces_between_special_tokens", "stop_token_ids", "regex",
                "json_schema", "ebnf", "lark")
_GRAMMAR_FIELDS = ("regex", "json_schema", "ebnf", "lark")


@dataclass
class LogprobOptions:
    return_logprob: bool = False
    top_logprobs_num: int = 0
    logprob_start_len: int = -1  # -1: output tokens only; 0: the prompt too (echo)


def choose_n(req: SamplingFields) -> int:
    n = 1 if req.n is None else req.n
    if not 1 <= n <= MAX_N:
        raise bad_request(f"n must be in [1, {MAX_N}], got {n}", param="n")
    return n


def resolve_max_tokens(requested: Optional[int], prompt_len: int, context_len: int,
                       default: Optional[int], param: str = "max_tokens", minimum: int = 0) -> int:
    """New-token budget for one prompt. `default` None means 'up to the context window'.
    `minimum` is the smallest budget the route accepts: chat needs a token to answer (OpenAI
    refuses 0 there), completions take 0 to score an echoed prompt."""
    room = context_len - prompt_len
    if room <= 0:
        raise bad_request(f"the prompt has {prompt_len} tokens but the model's context length is "
                          f"{context_len}; shorten the prompt", code="context_length_exceeded")
    if requested is None:
        return room if default is None else min(default, room)
    if requested < minimum:
        raise bad_request(f"{param} must be >= {minimum}, got {requested}", param=param)
    if requested > room:
        raise bad_request(f"{param} is {requested} but the context length is {context_len} and the prompt "
                          f"has {prompt_len} tokens, so at most {room} new tokens fit; lower {param}",
                          param=param)
    return requested


def sampling_params(req: SamplingFields, max_new_tokens: int, n: int) -> Dict[str, Any]:
    params: Dict[str, Any] = {"max_new_tokens": max_new_tokens, "n": n}
    for name in _PASSTHROUGH:
        value = getattr(req, name)
        if value is not None:
            params[_RENAMED.get(name, name)] = value
    grammar = grammar_from_response_format(req.response_format)
    if grammar:
        given = [name for name in _GRAMMAR_FIELDS if name in params]
        if given:
            raise bad_request(f"give either response_format or {given[0]}, not both", param="response_format")
        params.update(grammar)
    return params


def grammar_from_response_format(fmt: Optional[ResponseFormat]) -> Dict[str, str]:
    if fmt is None or fmt.type == "text":
        return {}
    if fmt.type == "json_object":
        return {"json_schema": JSON_OBJECT_SCHEMA}
    if fmt.type == "grammar":
        if fmt.syntax is None or not isinstance(fmt.grammar, str) or not fmt.grammar.strip():
            raise bad_request('response_format of type grammar needs "syntax" ("lark" or "ebnf") and "grammar" '
                              '(the grammar text)', param="response_format")
        return {fmt.syntax: fmt.grammar}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise bad_request("response_format of type json_schema needs json_schema.schema (a JSON Schema object)",
                          param="response_format")
    return {"json_schema": json.dumps(fmt.json_schema.schema_)}


def completion_logprobs(logprobs: Optional[int], echo: bool) -> LogprobOptions:
    if logprobs is None:
        return LogprobOptions()
    if not 0 <= logprobs <= MAX_TOP_LOGPROBS:
        raise bad_request(f"logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {logprobs}", param="logprobs")
    return LogprobOptions(True, logprobs, 0 if echo else -1)


def chat_logprobs(logprobs: Optional[bool], top_logprobs: Optional[int]) -> LogprobOptions:
    if top_logprobs is not None:
        if not logprobs:
            raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise bad_request(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {top_logprobs}",
                              param="top_logprobs")
    if not logprobs:
        return LogprobOptions()
    return LogprobOptions(True, top_logprobs or 0, -1)


def wants_usage_chunk(req: SamplingFields) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)
