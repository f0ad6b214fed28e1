"""A hostile grammar gets a 400 naming the limit, and the server keeps serving (issue 15 items 1, 8).

Before the limits, `a{99999999}` made jump-forward build a 100-million-character string: the
scheduler was OOM-killed and the server exited.
"""

from __future__ import annotations

import httpx

from tests.server.http_helpers import assert_error_body, wait_kv_idle

_HUGE_ITEMS = {"type": "array", "items": {"const": 1}, "minItems": 10_000_000}


def _normal_generate_works(http: httpx.Client) -> None:
    ok = http.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 4, "regex": "[0-9]{3}"}})
    assert ok.status_code == 200, ok.text[:300]
    assert len(ok.json()["text"]) == 3


def test_generate_with_huge_repetition_is_a_400_and_the_server_stays_up(server, http):
    for params, words in (
        ({"regex": "a{99999999}"}, ("MAX_FORCED_CHARS", "99999999")),
        ({"regex": r"[^\s\S]"}, ("matches no string",)),
        ({"json_schema": '{"type": "array", "items": {"const": 1}, "minItems": 10000000}'},
         ("minItems = 10000000", "MAX_FORCED_CHARS")),
    ):
        response = http.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 4, **params}})
        body = assert_error_body(response, 400)
        for word in words:
            assert word in body["message"], body
        _normal_generate_works(http)
    assert server.proc.poll() is None
    wait_kv_idle(server.base_url)


def test_openai_response_format_with_huge_min_items_is_a_400(server, http, model):
    response = http.post("/v1/chat/completions", json={
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _HUGE_ITEMS}},
    })
    error = assert_error_body(response, 400)
    assert "minItems = 10000000" in error["message"] and "MAX_FORCED_CHARS" in error["message"], error
    chat = http.post("/v1/chat/completions", json={"model": model, "max_tokens": 4,
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200, chat.text[:300]
    _normal_generate_works(http)
    assert server.proc.poll() is None
    wait_kv_idle(server.base_url)
