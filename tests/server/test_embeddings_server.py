"""Embedding and reward models over HTTP: /v1/embeddings (openai client, float and base64,
every input form, Matryoshka `dimensions`), native /encode and /classify, against transformers;
bad input gets a 400 naming the problem and the server keeps serving; generation routes are
refused on a pooling model, and encode routes on a generation model."""

from __future__ import annotations

import base64
from typing import Iterator

import httpx
import numpy as np
import openai
import pytest
import torch

from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_pooling_dir
from sglang.testing.pooling_reference import cosine, hf_embeddings, hf_scores
from tests.server.http_helpers import assert_error_body, wait_kv_idle
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

TEXTS = ["The capital of France is", "hello there", "one two three four five six seven eight nine ten"]
COSINE_MIN = 0.99999
MATRYOSHKA = [16, 32]


@pytest.fixture(scope="module")
def emb_path() -> str:
    return tiny_pooling_dir("mistral", pooling="mean", matryoshka_dimensions=MATRYOSHKA)


@pytest.fixture(scope="module")
def emb_server(emb_path) -> Iterator[ServerProcess]:
    proc = start_server(emb_path, ["--device", "cpu", "--dtype", "float32"])
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def emb_http(emb_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emb_server.base_url, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def refs(emb_path):
    tok = get_tokenizer(emb_path)
    ids = [tok.encode(t) for t in TEXTS]
    return ids, hf_embeddings(emb_path, ids, "mean", True)


def test_openai_client_embeddings_match_transformers(emb_server, refs):
    ids, expected = refs
    client = openai.OpenAI(base_url=emb_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    with client:
        # The client asks for base64 unless told otherwise and decodes it: both paths are checked.
        for fmt in (openai.NOT_GIVEN, "float"):
            reply = client.embeddings.create(model=MODEL_NAME, input=TEXTS, encoding_format=fmt)
            assert [d.index for d in reply.data] == [0, 1, 2] and reply.model == MODEL_NAME
            for d, ref in zip(reply.data, expected):
                assert cosine(d.embedding, ref) >= COSINE_MIN
            assert reply.usage.prompt_tokens == reply.usage.total_tokens == sum(len(i) for i in ids)
        single = client.embeddings.create(model=MODEL_NAME, input=TEXTS[1])
        assert len(single.data) == 1 and cosine(single.data[0].embedding, expected[1]) >= COSINE_MIN


def test_every_input_form_and_base64(emb_http, refs):
    ids, expected = refs
    forms = [(TEXTS[0], [0]), (TEXTS, [0, 1, 2]), (ids[2], [2]), (ids, [0, 1, 2])]
    for value, which in forms:
        body = emb_http.post("/v1/embeddings", json={"input": value, "model": MODEL_NAME}).json()
        assert body["object"] == "list" and [d["object"] for d in body["data"]] == ["embedding"] * len(which)
        for d, i in zip(body["data"], which):
            assert cosine(d["embedding"], expected[i]) >= COSINE_MIN
        assert body["usage"] == {"prompt_tokens": sum(len(ids[i]) for i in which),
                                 "total_tokens": sum(len(ids[i]) for i in which)}
    raw = emb_http.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert cosine(decoded.tolist(), expected[0]) >= COSINE_MIN


def test_dimensions_truncate_and_renormalize(emb_http, refs):
    _, expected = refs
    body = emb_http.post("/v1/embeddings", json={"input": TEXTS[0], "dimensions": 16}).json()
    vec = torch.tensor(body["data"][0]["embedding"])
    assert vec.shape == (16,) and abs(float(vec.norm()) - 1) < 1e-5
    assert cosine(vec.tolist(), expected[0][:16]) >= COSINE_MIN
    err = assert_error_body(emb_http.post("/v1/embeddings", json={"input": "x", "dimensions": 7}), 400)
    assert err["param"] == "dimensions" and "[16, 32]" in err["message"]


@pytest.mark.parametrize("body,param,words", [
    ({"input": []}, "input", "non-empty"),
    ({"input": ""}, "input", "empty string"),
    ({"input": ["a", ""]}, "input", "input[1]"),
    ({"input": [1, "a"]}, "input", "mixes types"),
    ({"input": [[1, 2], []]}, "input", "mixes types"),
    ({"input": {"text": "a"}}, "input", "non-empty string"),
    ({}, "input", "non-empty string"),
    ({"input": [1, 10**7]}, None, "input_ids must be in"),
    ({"input": "a", "encoding_format": "hex"}, None, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions", ">= 1"),
    ({"input": "a", "model": "other"}, "model", "does not exist"),
])
def test_bad_input_gets_a_400_naming_it_and_the_server_keeps_serving(emb_http, refs, body, param, words):
    status = 404 if body.get("model") == "other" else 400
    err = assert_error_body(emb_http.post("/v1/embeddings", json=body), status)
    assert words in err["message"] and (param is None or err["param"] == param), err
    ok = emb_http.post("/v1/embeddings", json={"input": TEXTS[1]}).json()
    assert cosine(ok["data"][0]["embedding"], refs[1][1]) >= COSINE_MIN


def test_native_encode_and_health(emb_http, refs):
    ids, expected = refs
    one = emb_http.post("/encode", json={"text": TEXTS[0]}).json()
    assert set(one) == {"embedding", "meta_info"} and cosine(one["embedding"], expected[0]) >= COSINE_MIN
    many = emb_http.post("/encode", json={"input_ids": ids[:2]}).json()
    assert [cosine(o["embedding"], r) >= COSINE_MIN for o, r in zip(many, expected)] == [True, True]
    assert emb_http.get("/health_generate").status_code == 200
    assert emb_http.get("/get_model_info").json()["is_generation"] is False
    assert_error_body(emb_http.post("/encode", json={"text": "a", "sampling_params": {"n": 2}}), 400)


def test_generation_routes_are_refused(emb_http, emb_server):
    for path, body in [("/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 2}}),
                       ("/v1/completions", {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 2}),
                       ("/v1/chat/completions", {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]})]:
        err = assert_error_body(emb_http.post(path, json=body), 400)
        assert "cannot generate" in err["message"], (path, err)
    wait_kv_idle(emb_server.base_url)


def test_classify_scores_match_transformers():
    path = tiny_pooling_dir("llama", head="seqcls", num_labels=3)
    tok = get_tokenizer(path)
    expected = hf_scores(path, [tok.encode(t) for t in TEXTS])
    server = start_server(path, ["--device", "cpu", "--dtype", "float32"])
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as http:
            out = http.post("/classify", json={"text": TEXTS}).json()
            for o, ref in zip(out, expected):
                assert len(o["embedding"]) == 3 and (torch.tensor(o["embedding"]) - ref).abs().max() <= 1e-4
            one = http.post("/classify", json={"text": TEXTS[2]}).json()
            assert (torch.tensor(one["embedding"]) - expected[2]).abs().max() <= 1e-4
            err = assert_error_body(http.post("/v1/embeddings", json={"input": "a", "dimensions": 2}), 400)
            assert "does not support 'dimensions'" in err["message"]
            wait_kv_idle(server.base_url)
    finally:
        server.terminate()


def test_encode_on_a_generation_server_is_refused(http):
    for path, body in [("/encode", {"text": "hi"}), ("/classify", {"text": "hi"}), ("/v1/embeddings", {"input": "hi"})]:
        err = assert_error_body(http.post(path, json=body), 400)
        assert "generation model" in err["message"] and "--is-embedding" in err["message"]
