"""Error shapes: /v1 routes answer OpenAI's {"error": {...}} with OpenAI's type strings, so the
unmodified `openai` client raises the class of the status with the message, type, param and code
readable; native routes keep upstream SGLang's {"object": "error", ...}."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.server.http_helpers import DONE, wait_kv_idle

MESSAGES = [{"role": "user", "content": "hi"}]
LONG = {"max_tokens": 400, "temperature": 0, "ignore_eos": True}


def _openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    assert sorted(body["error"]) == ["code", "message", "param", "type"], body
    return body["error"]


def test_bad_request_raises_bad_request_error_with_fields(oai, model):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=10**6)
    exc = info.value
    assert exc.status_code == 400 and exc.type == "invalid_request_error" and exc.param == "max_tokens"
    assert isinstance(exc.body, dict) and "max_tokens" in exc.body["message"]
    assert exc.body["message"] in exc.message  # the client shows the server's message


def test_sampling_value_error_is_openai_shaped(oai, model):
    with pytest.raises(openai.BadRequestError) as info:
        oai.completions.create(model=model, prompt="x", max_tokens=2, extra_body={"top_k": 0})
    assert info.value.type == "invalid_request_error" and "top_k" in info.value.body["message"]


def test_unknown_model_raises_not_found_with_code(oai, model):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)
    exc = info.value
    assert (exc.type, exc.code, exc.param) == ("invalid_request_error", "model_not_found", "model")
    assert "no-such-model" in exc.body["message"]
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


def test_unknown_v1_route_and_method_are_openai_shaped(http, oai):
    error = _openai_error(http.post("/v1/nope", json={}), 404)
    assert error["type"] == "invalid_request_error" and "/v1/nope" in error["message"]
    error = _openai_error(http.put("/v1/completions", json={}), 405)
    assert error["type"] == "invalid_request_error" and "PUT" in error["message"]
    with pytest.raises(openai.NotFoundError, match="no route"):
        oai.get("/nope", cast_to=object)


def test_validation_and_body_errors_are_openai_shaped(http):
    for body in (b"{", b"[]", json.dumps({"messages": "hi"}).encode()):
        error = _openai_error(http.post("/v1/chat/completions", content=body), 400)
        assert error["type"] == "invalid_request_error" and error["message"]
    error = _openai_error(http.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 0}), 400)
    assert error["param"] == "max_tokens"


def test_context_overflow_has_openai_code(http):
    error = _openai_error(http.post("/v1/completions", json={"prompt": [5] * 2000, "max_tokens": 1}), 400)
    assert error["code"] == "context_length_exceeded"


def test_native_routes_keep_upstream_shape(http):
    for response in (http.post("/generate", json={"text": "x", "sampling_params": {"top_k": 0}}),
                     http.get("/nope"), http.post("/tokenize", json={"prompt": "x", "model": "nope"})):
        body = response.json()
        assert body["object"] == "error" and body["code"] == response.status_code, body
        assert body["type"].endswith("Error") and body["message"]


def _abort_mid_stream(server, http, path: str, body: dict, rid: str) -> list:
    events = []
    with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
        with client.stream("POST", path, json={**body, "rid": rid, "stream": True}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
                    if len(events) == 2:
                        http.post("/abort_request", json={"rid": rid})
    return events


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", {"messages": MESSAGES, **LONG}),
                                       ("/v1/completions", {"prompt": "abort me", **LONG})])
def test_stream_error_event_is_openai_shaped(server, http, path, body):
    events = _abort_mid_stream(server, http, path, body, rid=f"abort-event-{len(path)}")
    assert events[-1] == DONE
    error = json.loads(events[-2])
    assert list(error) == ["error"] and sorted(error["error"]) == ["code", "message", "param", "type"]
    assert error["error"]["type"] == "invalid_request_error" and "abort" in error["error"]["message"]
    wait_kv_idle(server.base_url)


def test_openai_client_raises_on_stream_error_event(server, http, oai, model):
    stream = oai.chat.completions.create(model=model, messages=MESSAGES, stream=True, max_tokens=400,
                                         temperature=0, extra_body={"ignore_eos": True, "rid": "abort-client"})
    with pytest.raises(openai.APIError) as info:
        for i, _ in enumerate(stream):
            if i == 1:
                http.post("/abort_request", json={"rid": "abort-client"})
    assert "abort" in info.value.message and info.value.type == "invalid_request_error"
    wait_kv_idle(server.base_url)


def test_native_stream_error_event_keeps_upstream_shape(server, http):
    body = {"text": "abort my native stream", "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}
    events = _abort_mid_stream(server, http, "/generate", body, rid="abort-native-event")
    error = json.loads(events[-2])["error"]
    assert error["object"] == "error" and error["code"] == 400 and "abort" in error["message"]
    wait_kv_idle(server.base_url)

