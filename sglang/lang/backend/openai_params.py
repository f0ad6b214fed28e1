"""SglSamplingParams → keyword arguments of the `openai` client, and responses → meta_info.

Official OpenAI takes only its own parameters, so anything else is a clear error there. Other
OpenAI-compatible endpoints (ours, vLLM-like servers) get SGLang's extensions in `extra_body`
under the names our server's protocol uses (top_k, min_p, min_tokens, ignore_eos,
stop_token_ids, regex, json_schema, ebnf, lark). A parameter at its neutral value (top_k=-1, min_p=0,
ignore_eos=False, ...) counts as not given, so run-wide defaults never trip the check.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from sglang.lang.ir import SglSamplingParams

# SGLang name → OpenAI extra_body name, with the values that mean "off".
_EXTENSIONS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "top_k": ("top_k", (-1, 0)),
    "min_p": ("min_p", (0, 0.0)),
    "min_new_tokens": ("min_tokens", (0,)),
    "ignore_eos": ("ignore_eos", (False,)),
    "stop_token_ids": ("stop_token_ids", ()),
    "regex": ("regex", ()),
    "ebnf": ("ebnf", ()),
    "lark": ("lark", ()),
}
_STANDARD = ("temperature", "top_p", "n", "seed", "frequency_penalty", "presence_penalty", "stop")


def _given(value: Any, neutral: tuple[Any, ...] = ()) -> bool:
    if value is None or (isinstance(value, (list, tuple, str)) and not value):
        return False
    return not any(value == v and type(value) is type(v) for v in neutral)


def _unsupported(name: str, model: str, hint: str = "") -> ValueError:
    return ValueError(f"OpenAI backend: {name} is not supported by the official OpenAI API "
                      f"(model {model!r}){hint}")


def request_kwargs(params: SglSamplingParams, *, model: str, chat: bool,
                   official: bool) -> dict[str, Any]:
    """Keyword arguments for `chat.completions.create` / `completions.create`."""
    if _given(params.stop_regex):
        raise ValueError("OpenAI backend: stop_regex is not part of the OpenAI API; use stop "
                         "strings, or a RuntimeEndpoint backend")
    kwargs: dict[str, Any] = {"model": model}
    for name in _STANDARD:
        value = getattr(params, name)
        if _given(value):
            kwargs[name] = value
    if params.max_new_tokens is not None:
        # Official chat models (o-series) reject max_tokens; everyone else knows max_tokens.
        key = "max_completion_tokens" if official and chat else "max_tokens"
        kwargs[key] = params.max_new_tokens
    kwargs.update(_logprob_kwargs(params, chat))
    extra = _extensions(params, model=model, official=official)
    if _given(params.json_schema):
        if official:
            if not chat:
                raise _unsupported("json_schema", model, " for completion models; use a chat model")
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": json.loads(params.json_schema)}}
        else:
            extra["json_schema"] = params.json_schema
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _extensions(params: SglSamplingParams, *, model: str, official: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for name, (api_name, neutral) in _EXTENSIONS.items():
        value = getattr(params, name)
        if not _given(value, neutral):
            continue
        if official:
            hint = (f"; {name} needs an SGLang endpoint (base_url=...) or a RuntimeEndpoint/Engine backend"
                    if name in ("regex", "ebnf", "lark") else "")
            raise _unsupported(name, model, hint)
        extra[api_name] = value
    return extra


def _logprob_kwargs(params: SglSamplingParams, chat: bool) -> dict[str, Any]:
    if not params.return_logprob:
        return {}
    top = params.top_logprobs_num or 0
    if chat:
        return {"logprobs": True, **({"top_logprobs": top} if top else {})}
    return {"logprobs": top}


# ------------------------------------------------------------------------------ responses
def usage_meta(usage: Any) -> dict[str, Any]:
    """prompt/completion tokens, the raw usage, and cached_tokens when the endpoint says."""
    if usage is None:
        return {}
    meta: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "usage": usage.model_dump(exclude_none=True),
    }
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if cached is not None:
        meta["cached_tokens"] = cached
    return meta


def finish_meta(reason: Optional[str], matched: Any = None) -> Optional[dict[str, Any]]:
    """The runtime's finish_reason shape: {"type": "stop"|"length"|..., "matched": ...}."""
    if reason is None:
        return None
    out: dict[str, Any] = {"type": reason}
    if matched is not None:
        out["matched"] = matched
    return out


def chat_logprob_meta(content: Any) -> dict[str, Any]:
    """Chat `logprobs.content` → output_token_logprobs / output_top_logprobs entries."""
    tokens = [[c.logprob, None, c.token] for c in content or []]
    tops = [[[t.logprob, None, t.token] for t in (c.top_logprobs or [])] for c in content or []]
    out: dict[str, Any] = {"output_token_logprobs": tokens}
    if any(tops):
        out["output_top_logprobs"] = tops
    return out


def completion_logprob_meta(logprobs: Any) -> dict[str, Any]:
    """Completion `logprobs` → the same entries as chat."""
    if logprobs is None:
        return {}
    tokens = [[lp, None, tok] for tok, lp in zip(logprobs.tokens or [], logprobs.token_logprobs or [])]
    out: dict[str, Any] = {"output_token_logprobs": tokens}
    tops = [[[lp, None, t] for t, lp in (top or {}).items()] for top in logprobs.top_logprobs or []]
    if any(tops):
        out["output_top_logprobs"] = tops
    return out
