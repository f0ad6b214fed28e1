"""What upstream SGLang clients and tools see of the server: the OpenAPI schema behind /docs
generates without warnings, upstream's join route answers, and the log carries no per-request
client lines from the server's own warm-up."""

from __future__ import annotations

import json
import urllib.request
import warnings
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from sglang.runtime.entrypoints.http_server import create_app
from sglang.runtime.entrypoints.server_context import ServerContext
from sglang.runtime.server_args import ServerArgs
from tests.server.http_helpers import assert_error_body


class _NoTokenizerManager:
    """Enough of a tokenizer manager for routes that never reach the runtime."""

    def close(self) -> None:
        pass


def test_openapi_has_unique_operation_ids_and_no_warnings():
    app = create_app(ServerContext(ServerArgs(model_path="/unused"), _NoTokenizerManager()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with TestClient(app) as client:
            schema = client.get("/openapi.json").json()
            assert client.get("/docs").status_code == 200
    assert [str(w.message) for w in caught] == []
    ids = Counter(op["operationId"] for path in schema["paths"].values() for op in path.values())
    assert [op for op, n in ids.items() if n > 1] == []
    for path, methods in {"/generate": {"post", "put"}, "/flush_cache": {"get", "post"},
                          "/concate_and_append_request": {"post"}}.items():
        assert set(schema["paths"][path]) == methods, path


def test_flush_cache_and_generate_still_answer_every_method(http):
    assert http.get("/flush_cache").status_code == 200
    assert http.post("/flush_cache").status_code == 200
    reply = http.put("/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 1}})
    assert reply.status_code == 200 and reply.json()["meta_info"]["completion_tokens"] == 1


def _post_like_upstream_client(base_url: str, route: str, body: dict) -> tuple[int, dict]:
    """The request upstream's RuntimeEndpoint makes: urllib, a JSON body, POST."""
    request = urllib.request.Request(base_url + route, headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(request, data=json.dumps(body).encode(), timeout=30) as response:
        return response.status, json.loads(response.read())


def test_upstream_concate_and_append_request_is_answered(http, server):
    status, body = _post_like_upstream_client(server.base_url, "/concate_and_append_request",
                                              {"src_rids": ["a1b2", "c3d4"], "dst_rid": "e5f6"})
    assert status == 200 and body["success"] is True
    assert body["copied_tokens"] == 0 and body["message"]
    assert http.post("/generate", json={"text": "Still here", "sampling_params": {"max_new_tokens": 1}}).status_code == 200


@pytest.mark.parametrize("body", [
    {"src_rids": [], "dst_rid": "x"},
    {"src_rids": ["a"]},
    {"dst_rid": "x"},
    {"src_rids": "a", "dst_rid": "x"},
    {"src_rids": [1], "dst_rid": "x"},
    {"src_rids": ["a"], "dst_rid": ""},
])
def test_upstream_concate_and_append_request_rejects_bad_bodies(http, body):
    assert assert_error_body(http.post("/concate_and_append_request", json=body), 400)["message"]


def test_warm_up_request_is_not_logged_by_the_http_client(server):
    log = server.log()
    assert "warm-up done" in log  # the server logs at INFO
    assert "HTTP Request:" not in log, log[-2000:]
