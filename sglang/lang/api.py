"""The public frontend API (`import sglang as sgl`): primitives and backend helpers."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from sglang.lang.choices import ChoicesSamplingMethod, token_length_normalized
from sglang.lang.function import SglFunction
from sglang.lang.global_config import resolve_backend
from sglang.lang.ir import (SglExpr, SglExprList, SglGen, SglImage, SglOrderIndependent, SglRoleBegin,
                            SglRoleEnd,
                            SglSelect, SglVideo, check_choices, sampling_params_from_kwargs,
                            to_expr)


def function(func: Optional[Callable[..., Any]] = None, num_api_spec_tokens: Optional[int] = None
             ) -> Any:
    """Decorator: `@sgl.function` or `@sgl.function(num_api_spec_tokens=64)`."""
    if func is None:
        return lambda f: SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)
    return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)


def gen(name: Optional[str] = None, max_tokens: Optional[int] = None,
        min_tokens: Optional[int] = None, n: Optional[int] = None,
        stop: Optional[Union[str, list[str]]] = None, stop_token_ids: Optional[list[int]] = None,
        stop_regex: Optional[Union[str, list[str]]] = None, temperature: Optional[float] = None,
        top_p: Optional[float] = None, top_k: Optional[int] = None, min_p: Optional[float] = None,
        frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
        ignore_eos: Optional[bool] = None, return_logprob: Optional[bool] = None,
        logprob_start_len: Optional[int] = None, top_logprobs_num: Optional[int] = None,
        return_text_in_logprobs: Optional[bool] = None, dtype: Any = None,
        choices: Optional[list[str]] = None,
        choices_method: Optional[ChoicesSamplingMethod] = None, regex: Optional[str] = None,
        json_schema: Any = None, seed: Optional[int] = None, ebnf: Optional[str] = None,
        lark: Optional[str] = None) -> SglExpr:
    """Generate text into variable `name`; with `choices` it is a `select`.

    At most one constraint: `regex`, `json_schema`, `ebnf` (GBNF text) or `lark` (a grammar in
    Lark syntax, for a runtime started with --grammar-backend lark)."""
    if choices is not None:
        return SglSelect(name, check_choices(choices), 0.0 if temperature is None else temperature,
                         choices_method or token_length_normalized)
    given = [k for k, v in (("regex", regex), ("json_schema", json_schema), ("ebnf", ebnf), ("lark", lark))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"gen() takes one of regex, json_schema, ebnf, lark; got {' and '.join(given)}")
    params = sampling_params_from_kwargs(
        max_tokens=max_tokens, min_tokens=min_tokens, dtype=dtype, n=n, stop=stop,
        stop_token_ids=stop_token_ids, stop_regex=stop_regex, temperature=temperature,
        top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
        logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs, regex=regex, json_schema=json_schema,
        seed=seed, ebnf=ebnf, lark=lark)
    return SglGen(name, params)


def gen_int(name: Optional[str] = None, **kwargs: Any) -> SglExpr:
    """An integer (the value stays a string, e.g. "42"; parse with int())."""
    return gen(name, dtype=int, **kwargs)


def gen_string(name: Optional[str] = None, **kwargs: Any) -> SglExpr:
    """A double-quoted string literal, e.g. "Paris" with its quotes."""
    return gen(name, dtype=str, **kwargs)


def select(name: Optional[str] = None, choices: Optional[list[str]] = None,
           temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized) -> SglExpr:
    """Pick the best of `choices` as the continuation (scored with `choices_method`)."""
    return SglSelect(name, check_choices(choices or []), temperature, choices_method)


def order_independent(*parts: Any) -> SglExpr:
    """Parts the program does not mind reordering: run as given by the interpreter; the compiler's
    code-motion pass (opt-in) moves constant parts first so more of the prompt is shareable."""
    return SglOrderIndependent([to_expr(p) for p in parts])


def image(expr: Union[str, bytes]) -> SglExpr:
    return SglImage(expr)


def video(path: str, num_frames: int) -> SglExpr:
    return SglVideo(path, num_frames)


def _role(name: str, expr: Any = None) -> SglExprList:
    inner = [] if expr is None else [to_expr(expr)]
    return SglExprList([SglRoleBegin(name), *inner, SglRoleEnd(name)])


def system(expr: Any = None) -> SglExprList:
    return _role("system", expr)


def user(expr: Any = None) -> SglExprList:
    return _role("user", expr)


def assistant(expr: Any = None) -> SglExprList:
    return _role("assistant", expr)


def system_begin() -> SglExpr:
    return SglRoleBegin("system")


def system_end() -> SglExpr:
    return SglRoleEnd("system")


def user_begin() -> SglExpr:
    return SglRoleBegin("user")


def user_end() -> SglExpr:
    return SglRoleEnd("user")


def assistant_begin() -> SglExpr:
    return SglRoleBegin("assistant")


def assistant_end() -> SglExpr:
    return SglRoleEnd("assistant")


def flush_cache(backend: Any = None) -> bool:
    return resolve_backend(backend).flush_cache()


def get_server_info(backend: Any = None) -> dict[str, Any]:
    return resolve_backend(backend).get_server_info()
