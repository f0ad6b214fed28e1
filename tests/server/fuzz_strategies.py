"""Hypothesis strategies for HTTP request bodies of `/generate`, `/v1/completions` and
`/v1/chat/completions`.

A body starts as a realistic request (every sampling parameter under upstream's names, token
budgets mostly small so a run is fast, sometimes large), then is either sent as it is, mutated
(random fields replaced by values of random types and sizes, required fields dropped, unknown ones
added), or serialized into bytes that are not valid JSON. Grammar fields come from fuzz_grammars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, List

from hypothesis import strategies as st

from tests.server.fuzz_grammars import ebnfs, json_schema_strings, json_schemas, regexes

ROUTES = ("/generate", "/v1/completions", "/v1/chat/completions")
MODEL_NAME = "tiny-llama"
VOCAB = 1000  # the tiny llama's vocabulary (mutation puts ids beyond it)

HUGE_INTS = (-1, -(2**31), 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30))
ODD_STRINGS = ("", "NaN", "Infinity", "-inf", "1e999", "0", "true", "null", "\x00", "\ud800", "\udfff",
               "\ud83d", "\u202e", "\ufeff", "<|endoftext|>", "</s>", "<s>", "{{ messages }}", "{% raw %}")


@dataclass(frozen=True, repr=False)
class FuzzRequest:
    """One request: where it goes, its bytes, and whether the client hangs up after the first
    bytes of the answer (a disconnect mid-stream or before a whole answer)."""

    route: str
    body: bytes
    kind: str  # "valid", "mutated" or "raw" (not valid JSON)
    hang_up: bool = False

    @cached_property
    def streamed(self) -> bool:
        try:
            parsed = json.loads(self.body)
        except (ValueError, RecursionError):
            return False
        return isinstance(parsed, dict) and parsed.get("stream") is True

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep megabyte bodies readable
        body = self.body if len(self.body) <= 600 else self.body[:500] + b"..." + self.body[-100:]
        return f"FuzzRequest({self.route!r}, {body!r} ({len(self.body)} bytes), {self.kind!r}, hang_up={self.hang_up})"


# ---------------------------------------------------------------------------------- scalars
def long_strings() -> st.SearchStrategy[str]:
    """Long strings built by repetition (drawing megabytes character by character is slow)."""
    return st.builds(lambda s, k: s * k, st.text(min_size=1, max_size=4), st.sampled_from((1000, 20000, 200000)))


def texts() -> st.SearchStrategy[str]:
    """Prompt-like text: mostly short, any Unicode (lone surrogates too), sometimes very long."""
    short = st.text(max_size=24)
    return st.one_of(short, short, short, short, short, short, st.sampled_from(ODD_STRINGS), long_strings(),
                     st.text(st.characters(categories=("Cs", "Co", "Cc")), max_size=4))


def junk() -> st.SearchStrategy[Any]:
    """A JSON value of a random type and size, for any field."""
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.sampled_from(HUGE_INTS),
                       st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ODD_STRINGS),
                       st.text(max_size=8))
    nested = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                          max_leaves=6)
    many = st.builds(lambda v, k: [v] * k, scalar, st.sampled_from((100, 5000)))
    return st.one_of(scalar, scalar, scalar, nested, nested, long_strings(), many)


def token_ids() -> st.SearchStrategy[int]:
    """Ids in the vocabulary (mutation puts others in)."""
    return st.integers(0, VOCAB - 1)


def token_budgets() -> st.SearchStrategy[int]:
    """max_new_tokens / max_tokens: small most of the time, so a run is fast; now and then up to
    the context length (the fuzz server's is 256) or beyond it."""
    buckets = {"small": st.integers(0, 8), "medium": st.integers(9, 64),
               "large": st.sampled_from((128, 250, 255, 256, 1000, 5000))}
    return st.sampled_from(("small",) * 16 + ("medium",) * 3 + ("large",)).flatmap(buckets.__getitem__)


def stops() -> st.SearchStrategy[Any]:
    stop = st.one_of(st.text(min_size=1, max_size=4), st.sampled_from((" ", "\n", "e", "the", "</s>")))
    return st.one_of(stop, st.lists(stop, max_size=4))


def grammar() -> st.SearchStrategy[Dict[str, str]]:
    """At most one grammar field, usually none."""
    return st.one_of(st.just({}), st.just({}), st.just({}), st.builds(lambda r: {"regex": r}, regexes()),
                     st.builds(lambda s: {"json_schema": s}, json_schema_strings()),
                     st.builds(lambda e: {"ebnf": e}, ebnfs()))


def sampling_fields() -> Dict[str, st.SearchStrategy[Any]]:
    """Sampling parameters shared by the three routes (native names)."""
    unit = st.floats(0.01, 1.0)
    penalty = st.floats(-2.0, 2.0)
    return {
        "temperature": st.one_of(st.just(0), st.floats(0.0, 2.0)), "top_p": unit, "min_p": st.floats(0.0, 1.0),
        "top_k": st.one_of(st.just(-1), st.integers(1, 50)), "frequency_penalty": penalty, "presence_penalty": penalty,
        "repetition_penalty": st.floats(0.05, 2.0), "stop": stops(), "stop_token_ids": st.lists(token_ids(), max_size=3),
        "ignore_eos": st.booleans(), "skip_special_tokens": st.booleans(), "no_stop_trim": st.booleans(),
        "spaces_between_special_tokens": st.booleans(), "seed": st.integers(0, 2**31),
        "logit_bias": st.dictionaries(token_ids().map(str), st.floats(-100.0, 100.0), max_size=3),
    }


def _some_of(fields: Dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


# ---------------------------------------------------------------------------------- /generate
@st.composite
def _native_params(draw: st.DrawFn) -> Dict[str, Any]:
    params = draw(_some_of({**sampling_fields(), "min_new_tokens": st.integers(0, 4), "n": st.integers(1, 3),
                            "stop_regex": st.one_of(regexes(), st.lists(regexes(), max_size=2))}))
    params["max_new_tokens"] = draw(token_budgets())
    params.update(draw(grammar()))
    if params.get("min_new_tokens", 0) > params["max_new_tokens"]:
        params["min_new_tokens"] = params["max_new_tokens"]
    return params


@st.composite
def generate_bodies(draw: st.DrawFn) -> Dict[str, Any]:
    batch = draw(st.integers(1, 3)) if draw(st.booleans()) else None
    if draw(st.booleans()):
        one = texts()
        body: Dict[str, Any] = {"text": draw(one) if batch is None else draw(st.lists(one, min_size=batch, max_size=batch))}
    else:
        ids = st.lists(token_ids(), min_size=1, max_size=12)
        body = {"input_ids": draw(ids) if batch is None else draw(st.lists(ids, min_size=batch, max_size=batch))}
    body["sampling_params"] = draw(_native_params())
    body.update(draw(_some_of({
        "stream": st.booleans(), "return_logprob": st.booleans(), "top_logprobs_num": st.integers(0, 5),
        "logprob_start_len": st.integers(-1, 4), "token_ids_logprob": st.lists(token_ids(), max_size=3),
        "return_text_in_logprobs": st.booleans()})))
    if batch is None and draw(st.integers(0, 9)) == 0:
        body["rid"] = "fuzz-rid"  # a fixed id: concurrent ones collide ("already running")
    return body


# ---------------------------------------------------------------------------------- /v1
def _openai_fields() -> Dict[str, st.SearchStrategy[Any]]:
    fields = {**sampling_fields(), "min_tokens": st.integers(0, 4), "n": st.integers(1, 3), "stream": st.booleans(),
              "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
              "model": st.sampled_from((MODEL_NAME,) * 5 + ("other-model",)), "user": st.text(max_size=6)}
    fields["response_format"] = response_formats()
    return fields


def response_formats() -> st.SearchStrategy[Dict[str, Any]]:
    spec = st.fixed_dictionaries({"name": st.just("fuzz")}, optional={"schema": json_schemas(), "strict": st.booleans()})
    return st.one_of(st.just({"type": "text"}), st.just({"type": "json_object"}),
                     st.builds(lambda s: {"type": "json_schema", "json_schema": s}, spec))


@st.composite
def _openai_body(draw: st.DrawFn) -> Dict[str, Any]:
    body = draw(_some_of(_openai_fields()))
    if "response_format" not in body:
        body.update(draw(grammar()))
    return body


def _completion_prompts() -> st.SearchStrategy[Any]:
    ids = st.lists(token_ids(), min_size=1, max_size=12)
    return st.one_of(texts(), texts(), st.lists(texts(), min_size=1, max_size=3), ids,
                     st.lists(ids, min_size=1, max_size=3))


@st.composite
def completion_bodies(draw: st.DrawFn) -> Dict[str, Any]:
    body = draw(_openai_body())
    body["prompt"] = draw(_completion_prompts())
    body["max_tokens"] = draw(token_budgets())
    body.update(draw(_some_of({"echo": st.booleans(), "logprobs": st.integers(0, 5), "best_of": st.just(1),
                               "suffix": st.just("")})))
    return body


def _content() -> st.SearchStrategy[Any]:
    part = st.builds(lambda t: {"type": "text", "text": t}, texts())
    return st.one_of(texts(), texts(), st.lists(part, min_size=1, max_size=3))


def _messages() -> st.SearchStrategy[List[Dict[str, Any]]]:
    message = st.fixed_dictionaries({"role": st.sampled_from(("system", "user", "assistant", "developer", "tool")),
                                     "content": _content()}, optional={"name": st.text(max_size=4)})
    user = st.builds(lambda c: {"role": "user", "content": c}, _content())
    return st.one_of(st.lists(user, min_size=1, max_size=1), st.lists(message, min_size=1, max_size=5))


@st.composite
def chat_bodies(draw: st.DrawFn) -> Dict[str, Any]:
    body = draw(_openai_body())
    body["messages"] = draw(_messages())
    # No budget means "up to the context length": slow on CPU, so rare.
    budget = draw(st.sampled_from(("max_tokens",) * 12 + ("max_completion_tokens",) * 6 + (None,)))
    if budget:
        body[budget] = max(draw(token_budgets()), 1)  # chat refuses 0 (mutation still sends it)
    body.update(draw(_some_of({"logprobs": st.booleans(), "top_logprobs": st.integers(0, 5),
                               "chat_template_kwargs": st.just({"enable_thinking": False})})))
    if "top_logprobs" in body:
        body["logprobs"] = True
    if body["messages"][-1]["role"] == "assistant":
        body["continue_final_message"] = draw(st.booleans())
    return body


VALID_BODIES: Dict[str, Callable[[], st.SearchStrategy[Dict[str, Any]]]] = {
    "/generate": generate_bodies, "/v1/completions": completion_bodies, "/v1/chat/completions": chat_bodies,
}
# Fields worth mutating even when the valid body left them out.
KNOWN_FIELDS = {
    "/generate": ("text", "input_ids", "sampling_params", "stream", "return_logprob", "top_logprobs_num",
                  "logprob_start_len", "token_ids_logprob", "rid", "image_data"),
    "/v1/completions": ("prompt", "max_tokens", "n", "logprobs", "echo", "stream", "stream_options", "stop",
                        "temperature", "top_p", "logit_bias", "seed", "response_format", "regex", "json_schema", "model"),
    "/v1/chat/completions": ("messages", "max_tokens", "max_completion_tokens", "n", "logprobs", "top_logprobs",
                             "stream", "stop", "temperature", "logit_bias", "response_format", "tools", "tool_choice",
                             "ebnf", "model", "chat_template_kwargs"),
}
SAMPLING_KEYS = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "min_p", "n", "stop",
                 "stop_token_ids", "logit_bias", "seed", "regex", "json_schema", "ebnf", "ignore_eos",
                 "frequency_penalty", "repetition_penalty", "stop_regex", "custom_params")


# ---------------------------------------------------------------------------------- mutation
@st.composite
def mutated(draw: st.DrawFn, route: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """`body` with one to three fields replaced by junk, dropped, or added."""
    body = dict(body)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(("replace", "replace", "nested", "drop", "unknown")))
        if action == "drop" and body:
            body.pop(draw(st.sampled_from(sorted(body))))
        elif action == "unknown":
            body[draw(st.text(min_size=1, max_size=8))] = draw(junk())
        elif action == "nested" and route == "/generate" and isinstance(body.get("sampling_params"), dict):
            body["sampling_params"] = {**body["sampling_params"], draw(st.sampled_from(SAMPLING_KEYS)): draw(junk())}
        elif action == "nested" and route == "/v1/chat/completions" and isinstance(body.get("messages"), list):
            body["messages"] = [*body["messages"], draw(junk())]
        else:
            body[draw(st.sampled_from(KNOWN_FIELDS[route] + tuple(body)))] = draw(junk())
    return body


def encode(body: Any) -> bytes:
    # json.dumps writes NaN/Infinity literals for non-finite floats: invalid JSON the server refuses.
    return json.dumps(body).encode()


@st.composite
def raw_bytes(draw: st.DrawFn, body: Dict[str, Any]) -> bytes:
    """Bytes that are not a valid JSON object, most of them close to the real body."""
    data = encode(body)
    how = draw(st.sampled_from(("truncate", "garbage", "deep", "nan", "utf16", "bom", "trailing", "surrogate",
                                "bad_utf8", "top_level")))
    if how == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "deep":
        depth = draw(st.sampled_from((100, 1000, 5000, 100000)))
        return b'{"text": ' + b"[" * depth + b"]" * depth + b', "prompt": ' + b"{\"a\":" * depth + b"1" + b"}" * depth + b"}"
    if how == "nan":
        return data[:-1] + b', "temperature": NaN, "top_p": Infinity}' if data.endswith(b"}") else b"NaN"
    if how == "utf16":
        return data.decode().encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "trailing":
        return data + draw(st.sampled_from((b"}", b",", b" garbage", b"\x00", b"{}")))
    if how == "surrogate":
        return data[:-1] + b', "text": "\\ud800", "prompt": "\\udc00x"}' if data.endswith(b"}") else data
    if how == "bad_utf8":
        return data.replace(b'"', b'"\xff\xfe', 1)
    if how == "top_level":
        return draw(st.sampled_from((b"[]", b"null", b"123", b'"body"', b"[" + data + b"]", b"true")))
    return draw(st.binary(max_size=64))


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    route = draw(st.sampled_from(ROUTES))
    body = draw(VALID_BODIES[route]())
    kind = draw(st.sampled_from(("valid", "valid", "mutated", "mutated", "raw")))
    if kind == "raw":
        data = draw(raw_bytes(body))
    else:
        data = encode(draw(mutated(route, body)) if kind == "mutated" else body)
    return FuzzRequest(route, data, kind, hang_up=draw(st.sampled_from((True,) + (False,) * 15)))


def request_groups() -> st.SearchStrategy[List[FuzzRequest]]:
    """One to four requests sent at once (so aborts, queueing and batching interleave)."""
    return st.lists(fuzz_requests(), min_size=1, max_size=4)


# ---------------------------------------------------------------------------------- found bugs
def _req(route: str, body: Any, kind: str = "valid") -> FuzzRequest:
    return FuzzRequest(route, body if isinstance(body, bytes) else encode(body), kind)


_GEN = "/generate"
# Groups that once broke the server, replayed by every run (hypothesis @example) so the fixed-seed
# CI slice covers them whatever it draws. Each also has a focused test next to its fix.
FOUND_GROUPS: List[List[FuzzRequest]] = [
    # 100,000 nested objects: orjson's parser overflowed the C stack (SIGSEGV) -> test_json_depth.py
    [_req(_GEN, b'{"text": ' + b'{"a":' * 100000 + b"1" + b"}" * 100000 + b"}", "raw")],
    # prefill-only requests next to ordinary ones: admission promised a req_to_token row that was
    # still held, and the scheduler died -> tests/engine/test_request_rows.py
    [_req(_GEN, {"input_ids": [[1, 2], [3, 4], [5, 6]], "sampling_params": {"max_new_tokens": 0}}),
     _req(_GEN, {"text": "a b c", "sampling_params": {"max_new_tokens": 8, "n": 3}}),
     _req(_GEN, {"text": "d e f", "sampling_params": {"max_new_tokens": 8, "ignore_eos": True}}),
     _req("/v1/completions", {"prompt": "g h", "max_tokens": 8, "n": 2})],
    # stop_regex: repeat count too large for re (HTTP 500), a count the regex package would expand
    # to gigabytes, catastrophic backtracking on forced commas, nesting too deep to measure (HTTP
    # 500) -> test_stop_regex*.py
    [_req(_GEN, {"text": "x", "sampling_params": {"stop_regex": "a{1000000000000000000000000000000}"}}),
     _req(_GEN, {"text": "x", "sampling_params": {"stop_regex": "(?:(?:b)??){1000000,}", "max_new_tokens": 4}}),
     _req(_GEN, {"text": "x", "sampling_params": {"stop_regex": r"(.*?,){30}\x00", "max_new_tokens": 40,
                                                  "ignore_eos": True, "temperature": 0, "logit_bias": {"11": 100}}}),
     _req(_GEN, {"text": "x", "sampling_params": {"stop_regex": "(" * 200 + "a" + "|b)" * 200}})],
    # an EBNF error at a non-ASCII character: xgrammar's message failed to decode -> test_backends.py
    [_req(_GEN, {"text": "x", "sampling_params": {"ebnf": 'root ::= "a" | 中', "max_new_tokens": 4}})],
]
