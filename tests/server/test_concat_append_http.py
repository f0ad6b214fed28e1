"""POST /concat_and_append on a real server: the result is served from the cache afterwards,
bad input is a 400 with the usual error body, and the server keeps serving."""

from __future__ import annotations

import pytest

from tests.server.http_helpers import assert_error_body, wait_kv_idle

PARENT = "The three friends each told a story:"


def _generate(http, **body) -> dict:
    response = http.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_concat_and_append_then_generate_hits_the_cache(http, server):
    outs = [_generate(http, text=PARENT, sampling_params={"max_new_tokens": 5, "temperature": 1.0, "seed": i})
            for i in range(3)]
    children = [PARENT + o["text"] for o in outs]
    response = http.post("/concat_and_append", json={"parent": PARENT, "children": children})
    assert response.status_code == 200, response.text
    result = response.json()
    for key in ("input_ids", "num_tokens", "copied_tokens", "cached_prefix_tokens", "complete"):
        assert key in result
    assert result["complete"] and result["num_tokens"] == len(result["input_ids"]) and result["copied_tokens"] > 0
    parent_ids = http.post("/tokenize", json={"prompt": PARENT}).json()["tokens"]
    assert result["input_ids"][: len(parent_ids)] == parent_ids
    follow = _generate(http, input_ids=result["input_ids"] + [5, 9], sampling_params={"max_new_tokens": 2})
    assert follow["meta_info"]["cached_tokens"] >= result["num_tokens"] - 1
    wait_kv_idle(server.base_url)


def test_concat_and_append_with_token_ids(http, server):
    parent = http.post("/tokenize", json={"prompt": "Numbers:"}).json()["tokens"]
    children = [parent + [40, 41, 42], parent + [50, 51]]
    result = http.post("/concat_and_append", json={"parent": parent, "children": children}).json()
    assert result["input_ids"] == parent + [40, 41, 42, 50, 51] and result["complete"]
    wait_kv_idle(server.base_url)


@pytest.mark.parametrize("body", [
    {"parent": PARENT, "children": []},
    {"parent": PARENT},
    {"children": [PARENT + " a"]},
    {"parent": 5, "children": [PARENT]},
    {"parent": PARENT, "children": "text"},
    {"parent": PARENT, "children": [{"text": "x"}]},
    {"parent": PARENT, "children": [[1, "x"]]},
    {"parent": PARENT, "children": [[1, 2.5]]},
    {"parent": [1, 2], "children": [[1, 2, 10**7]]},
    {"parent": [], "children": [[1, 2]]},
    {"parent": PARENT, "children": [PARENT], "unknown": 1},
])
def test_bad_input_is_400_and_server_keeps_serving(http, server, body):
    error = assert_error_body(http.post("/concat_and_append", json=body), 400)
    assert error["message"]
    assert _generate(http, text="Still here", sampling_params={"max_new_tokens": 1})["meta_info"]["completion_tokens"] == 1


def test_non_object_bodies_are_400(http):
    assert_error_body(http.post("/concat_and_append", content=b"[1, 2]"), 400)
    assert_error_body(http.post("/concat_and_append", content=b"{not json"), 400)
