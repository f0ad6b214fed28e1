"""A second server, with --api-key and a one-slot waiting queue: 401 on every route except /health,
503 when the queue is full, and a clean SIGTERM shutdown that takes the child processes along."""

from __future__ import annotations

import asyncio
import time
from typing import Iterator

import httpx
import openai
import psutil
import pytest

from sglang.testing.fixtures import tiny_model_dir
from tests.server.http_helpers import assert_error_body
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

KEY = "sk-test-secret"
PROTECTED = [("GET", "/v1/models", None), ("GET", f"/v1/models/{MODEL_NAME}", None), ("GET", "/get_model_info", None),
             ("GET", "/get_server_info", None), ("GET", "/server_info", None), ("GET", "/health_generate", None),
             ("GET", "/metrics", None), ("POST", "/generate", {"text": "hi"}), ("POST", "/flush_cache", None),
             ("POST", "/v1/completions", {"prompt": "hi"}), ("POST", "/tokenize", {"prompt": "hi"}),
             ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
             ("POST", "/detokenize", {"tokens": [1]}), ("POST", "/abort_request", {"rid": "x"}),
             ("POST", "/v1/embeddings", {"input": "x"}), ("GET", "/docs", None), ("GET", "/no-such-route", None)]


@pytest.fixture(scope="module")
def keyed() -> Iterator[ServerProcess]:
    proc = start_server(tiny_model_dir("llama"), ["--device", "cpu", "--max-running-requests", "2",
                                                  "--max-queued-requests", "1"], api_key=KEY)
    yield proc
    proc.terminate()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
                         ids=["missing", "wrong", "no-bearer"])
def test_every_route_but_health_needs_the_key(keyed, headers):
    with httpx.Client(base_url=keyed.base_url, timeout=30, trust_env=False) as client:
        for method, path, body in PROTECTED:
            response = client.request(method, path, json=body, headers=headers)
            assert "key" in assert_error_body(response, 401)["message"], (method, path)
        assert client.get("/health", headers=headers).status_code == 200


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer "])
def test_auth_scheme_is_case_insensitive(keyed, scheme):
    """RFC 7235: the scheme name is case-insensitive (and one or more spaces end it); the key is exact."""
    with httpx.Client(base_url=keyed.base_url, timeout=30, trust_env=False) as client:
        assert client.get("/get_model_info", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200
        wrong = client.get("/get_model_info", headers={"Authorization": f"{scheme} {KEY.upper()}"})
        assert_error_body(wrong, 401)


def test_401_shape_follows_the_route(keyed):
    with httpx.Client(base_url=keyed.base_url, timeout=30, trust_env=False) as client:
        error = assert_error_body(client.get("/v1/models"), 401)
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
        native = assert_error_body(client.get("/get_model_info"), 401)
        assert native["type"] == "AuthenticationError"
    bad = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=MODEL_NAME, max_tokens=2, messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "invalid_api_key" and "API key" in info.value.body["message"]


def test_right_key_works_with_openai_client(keyed):
    with httpx.Client(base_url=keyed.base_url, timeout=30, headers=keyed.headers, trust_env=False) as client:
        assert client.get("/get_model_info").status_code == 200
        assert client.post("/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}}).status_code == 200
    good = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key=KEY, max_retries=0)
    assert good.chat.completions.create(model=MODEL_NAME, max_tokens=2, messages=[{"role": "user", "content": "x"}])
    bad = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


async def _flood(keyed: ServerProcess, count: int):
    async with httpx.AsyncClient(base_url=keyed.base_url, timeout=120, headers=keyed.headers,
                                 trust_env=False) as client:
        async def one(i):
            body = {"prompt": f"flood {i}", "max_tokens": 64, "ignore_eos": True, "stream": i % 2 == 1}
            response = await client.post("/v1/completions", json=body)
            await response.aread()
            return response

        return await asyncio.gather(*[one(i) for i in range(count)])


def test_full_queue_answers_503(keyed):
    responses = asyncio.run(_flood(keyed, 12))
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, [r.status_code for r in responses]
    for response in rejected:
        body = assert_error_body(response, 503)
        assert body["type"] == "server_error" and "queue" in body["message"]  # a /v1 route: OpenAI's type
    assert all(r.status_code in (200, 503) for r in responses)
    assert any(r.status_code == 200 for r in responses)


def test_sigterm_shuts_down_cleanly_with_children(keyed):
    children = psutil.Process(keyed.proc.pid).children(recursive=True)
    assert len(children) >= 2  # scheduler and detokenizer
    started = time.monotonic()
    assert keyed.terminate(timeout=30) == 0
    assert time.monotonic() - started < 30
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children still running: {[p.pid for p in alive]}"
    log = keyed.log()
    assert f"listening on http://127.0.0.1:{keyed.port}" in log and "warm-up done" in log
    assert "received SIGTERM" in log
