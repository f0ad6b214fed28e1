"""Malformed and hostile requests, each of which must get a 4xx with an OpenAI-style error body.

Each case is (name, method, path, raw body bytes or None, expected status or None for "any 4xx").
"""

from __future__ import annotations

import json
from typing import Any, List, NamedTuple, Optional

MB_TEXT = "lorem ipsum " * (1024 * 1024 // 12)  # ~1 MB of text, far beyond the 1024-token context

POST_ROUTES = ("/generate", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize",
               "/abort_request", "/v1/embeddings")

# Bodies that are not a usable JSON object at all.
GARBAGE_BODIES = (
    b"", b"   ", b"{", b'{"a":', b'{"text": "abc', b"[1, 2", b"nul", b"{'single': 'quotes'}",
    b"\xff\xfe\x00garbage", b'{"text": "\xff\xfe bad utf8"}', b'{"a": NaN}', b'{"a": Infinity}', b"[]",
    b'"just a string"', b"123", b"null", b'{"a": "\\ud800 lone surrogate"}',
    b'{"text": ' + b'{"a":' * 100000 + b"1" + b"}" * 100000 + b"}",  # parser recursion (SIGSEGV)
)


class Case(NamedTuple):
    name: str
    method: str
    path: str
    body: Optional[bytes]
    status: Optional[int] = None


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _with(base: dict, **changes: Any) -> dict:
    out = dict(base)
    out.update(changes)
    return out


def garbage_cases() -> List[Case]:
    return [Case(f"garbage {body[:20]!r} -> {route}", "POST", route, body, 400)
            for route in POST_ROUTES for body in GARBAGE_BODIES]


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
USER = "user"
CHAT_CHANGES = [
    ("messages", "hi"), ("messages", []), ("messages", [1]), ("messages", None), ("messages", {"role": USER}),
    ("messages", [{"content": "no role"}]), ("messages", [{"role": "robot", "content": "x"}]),
    ("messages", [{"role": USER, "content": 5}]),
    ("messages", [{"role": USER, "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}]),
    ("messages", [{"role": USER, "content": [{"type": "text"}]}]),
    ("messages", [{"role": USER, "content": [{"type": "hologram"}]}]),
    ("messages", [{"role": USER, "content": [{"type": "input_audio", "input_audio": {}}]}]),
    ("messages", [{"role": USER, "content": MB_TEXT}]),
    ("temperature", "hot"), ("temperature", -1), ("temperature", [1]), ("temperature", {}),
    ("top_p", 0), ("top_p", 1.5), ("top_p", "x"),
    ("max_tokens", -5), ("max_tokens", 10**30), ("max_tokens", 1.5), ("max_tokens", "10"), ("max_tokens", 10**6),
    ("max_completion_tokens", -1), ("n", 0), ("n", -1), ("n", 10**9), ("n", "2"), ("n", 2.5),
    ("logprobs", "yes"), ("stop", 5), ("stop", [1, 2]), ("stop", [""]), ("seed", "42"), ("seed", 4.2),
    ("stream", "yes"), ("stream_options", "x"), ("stream_options", {"include_usage": "yes"}),
    ("logit_bias", {"abc": 1}), ("logit_bias", {"5": "x"}), ("logit_bias", [1]), ("logit_bias", {"99999": 1}),
    ("logit_bias", {"5": 1e308}), ("logit_bias", {"5": 100.5}), ("logit_bias", {"5": -1e10}),
    ("max_tokens", 0), ("max_completion_tokens", 0),
    ("frequency_penalty", 5), ("presence_penalty", -3),
    ("response_format", {"type": "xml"}), ("response_format", {"type": "json_schema"}),
    ("response_format", "json"), ("model", 5), ("top_k", 0), ("top_k", "x"), ("min_p", 2),
    ("repetition_penalty", 0), ("repetition_penalty", 5), ("min_tokens", 10), ("stop_token_ids", [10**6]),
    ("stop_token_ids", "x"), ("regex", 5), ("json_schema", {"type": "object"}), ("regex", "(unclosed"),
    ("ebnf", "root ::= "), ("json_schema", "{not json"), ("tools", [{"type": "function"}]),
    ("continue_final_message", True), ("continue_final_message", "yes"), ("chat_template_kwargs", {"tokenize": True}),
    ("chat_template_kwargs", "x"), ("rid", 5), ("ignore_eos", "true"), ("skip_special_tokens", 1),
]


def chat_cases() -> List[Case]:
    cases = [Case(f"chat {field}={str(value)[:30]!r}", "POST", "/v1/chat/completions",
                  _json(_with(CHAT, **{field: value}))) for field, value in CHAT_CHANGES]
    cases += [
        Case("chat unknown model", "POST", "/v1/chat/completions", _json(_with(CHAT, model="nope")), 404),
        Case("chat both token limits", "POST", "/v1/chat/completions",
             _json(_with(CHAT, max_completion_tokens=3))),
        Case("chat top_logprobs without logprobs", "POST", "/v1/chat/completions", _json(_with(CHAT, top_logprobs=2))),
        Case("chat top_logprobs too many", "POST", "/v1/chat/completions",
             _json(_with(CHAT, logprobs=True, top_logprobs=100))),
        Case("chat response_format and regex", "POST", "/v1/chat/completions",
             _json(_with(CHAT, regex="a", response_format={"type": "json_object"}))),
        Case("chat missing messages", "POST", "/v1/chat/completions", _json({"max_tokens": 4})),
    ]
    return cases


COMPLETION = {"prompt": "hi", "max_tokens": 4}
COMPLETION_CHANGES = [
    ("prompt", 5), ("prompt", None), ("prompt", []), ("prompt", [[]]), ("prompt", [1.5]), ("prompt", [-1]),
    ("prompt", [10**6]), ("prompt", [[1], [10**7]]), ("prompt", {"a": 1}), ("prompt", [None]),
    ("prompt", MB_TEXT), ("prompt", [5] * 2000), ("best_of", 3), ("suffix", "tail"), ("logprobs", 21),
    ("logprobs", -1), ("logprobs", True), ("echo", "yes"), ("max_tokens", 5000), ("n", 10**6),
    ("prompt", ["a"] * 5000), ("logit_bias", {"5": 1e308}), ("n", 129),
]


def completion_cases() -> List[Case]:
    cases = [Case(f"completion {field}={str(value)[:30]!r}", "POST", "/v1/completions",
                  _json(_with(COMPLETION, **{field: value}))) for field, value in COMPLETION_CHANGES]
    cases.append(Case("completion unknown model", "POST", "/v1/completions", _json(_with(COMPLETION, model="x")), 404))
    return cases


GEN = {"text": "hi", "sampling_params": {"max_new_tokens": 4}}
GENERATE_BODIES = [
    {}, {"text": "a", "input_ids": [1]}, {"text": 5}, {"text": [1, 2]}, {"input_ids": "abc"}, {"input_ids": [-1]},
    {"input_ids": [10**6]}, {"input_ids": [[1], [2, "x"]]}, {"input_ids": []}, {"text": []},
    {"text": MB_TEXT}, {"text": ["a"] * 5000}, {"text": ["a", "b"], "sampling_params": [{}]},
    _with(GEN, sampling_params="x"), _with(GEN, sampling_params={"unknown_param": 1}),
    _with(GEN, sampling_params={"temperature": -1}), _with(GEN, sampling_params={"top_k": 0}),
    _with(GEN, sampling_params={"stop": [""]}), _with(GEN, sampling_params={"n": 10**6}),
    _with(GEN, sampling_params={"logit_bias": {"5": 1e308}}), _with(GEN, sampling_params={"logit_bias": {"5": -101}}),
    _with(GEN, sampling_params={"max_new_tokens": -1}), _with(GEN, sampling_params={"max_new_tokens": "x"}),
    _with(GEN, sampling_params={"regex": "(", "max_new_tokens": 4}),
    _with(GEN, sampling_params={"stop_regex": "a{1000000000000000000000000000000}", "max_new_tokens": 4}),
    _with(GEN, rid=["a", "b"]), _with(GEN, rid=5), _with(GEN, return_logprob="yes"),
    _with(GEN, return_logprob=True, logprob_start_len=-5), _with(GEN, return_logprob=True, top_logprobs_num=-1),
    _with(GEN, return_logprob=True, token_ids_logprob=[99999]), _with(GEN, stream="yes"),
    _with(GEN, image_data="http://x/a.png"), _with(GEN, stream=True, sampling_params={"temperature": "x"}),
]


def generate_cases() -> List[Case]:
    return [Case(f"generate {str(body)[:60]}", "POST", "/generate", _json(body)) for body in GENERATE_BODIES]


def misc_cases() -> List[Case]:
    bodies = [
        ("/tokenize", {}), ("/tokenize", {"prompt": 5}), ("/tokenize", {"prompt": [1]}),
        ("/tokenize", {"prompt": "x", "model": "nope"}), ("/detokenize", {"tokens": "x"}),
        ("/detokenize", {"tokens": [-1]}), ("/detokenize", {"tokens": [10**6]}), ("/detokenize", {"tokens": [1.5]}),
        ("/detokenize", {}), ("/abort_request", {}), ("/abort_request", {"rid": 5}),
        ("/v1/embeddings", {"input": "x"}),
    ]
    cases = [Case(f"{path} {body}", "POST", path, _json(body)) for path, body in bodies]
    routes = [("GET", "/nope", 404), ("POST", "/v1/nope", 404), ("GET", "/v1/chat/completions", 405),
              ("DELETE", "/generate", 405), ("PUT", "/v1/completions", 405), ("GET", "/v1/models/unknown", 404),
              ("GET", "/generate", 405), ("POST", "/health", 405), ("GET", "/%2e%2e/%2e%2e/etc/passwd", 404),
              ("GET", "/v1/models/../../x", 404), ("PATCH", "/flush_cache", 405), ("GET", "/v1", 404)]
    cases += [Case(f"{method} {path}", method, path, None, status) for method, path, status in routes]
    return cases


def all_cases() -> List[Case]:
    return garbage_cases() + chat_cases() + completion_cases() + generate_cases() + misc_cases()
