"""Request bodies are measured for nesting depth before orjson parses them: orjson < 3.9.15 parses
nesting recursively without a limit, and a 600 KB body of 100,000 nested objects killed the server
process with SIGSEGV (found by tests/server/test_fuzz_http.py; the HTTP-level case is in
tests/server/hostile_cases.py)."""

from __future__ import annotations

import json

import pytest

from sglang.runtime.entrypoints.json_depth import MAX_JSON_DEPTH, exceeds_depth


def _nested_objects(depth: int) -> bytes:
    return b'{"text": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize("data", [
    _nested_objects(100_000), b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    b"[" * 1_000_000,  # not even closed: still refused, before any parser recursion
    b'{"x": "[[[", "y": ' + b"[" * 200 + b"]" * 200 + b"}",
    b'{"x": "\\\\", "y": ' + b"[" * 200 + b"]" * 200 + b"}",  # an escaped backslash ends no string early
])
def test_deep_bodies_are_detected(data: bytes) -> None:
    assert exceeds_depth(data)


@pytest.mark.parametrize("data", [
    b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
    json.dumps({"input_ids": [[1, 2, 3]] * 5000}).encode(),  # many brackets, depth 3
    json.dumps({"text": "[[{{" * 100_000}).encode(),  # brackets inside a string do not nest
    json.dumps({"text": 'a\\"[[[' * 1000, "b": "]]"}).encode(),  # escaped quotes stay inside the string
    json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "[" * 300}]}]}).encode(),
])
def test_ordinary_bodies_pass(data: bytes) -> None:
    assert not exceeds_depth(data)
