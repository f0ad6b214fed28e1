"""LoRA over HTTP: lora_path on /generate (one or per prompt), OpenAI `model` as '<base>:<adapter>'
or the adapter name, /load_lora_adapter and /unload_lora_adapter at run time, and 400s naming the
problem for unknown adapters and bad adapter paths; the server keeps serving."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.server.http_helpers import assert_error_body, wait_kv_idle
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

GREEDY = {"max_new_tokens": 4, "temperature": 0.0, "ignore_eos": True}


@pytest.fixture(scope="module")
def lora_server(lora_dirs) -> Iterator[ServerProcess]:
    base, adapters = lora_dirs["llama"]
    proc = start_server(base, ["--device", "cpu", "--dtype", "float32", "--max-loras-per-batch", "2",
                               "--lora-paths", f"a1={adapters['a1']}", adapters["a2"]])
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def http(lora_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lora_server.base_url, timeout=60, trust_env=False) as client:
        yield client


def _gen(http, text, lora=None):
    body = {"text": text, "sampling_params": GREEDY}
    if lora is not None:
        body["lora_path"] = lora
    return http.post("/generate", json=body)


def test_generate_with_adapters_and_openai_model(http):
    one = _gen(http, "hello there", "a1").json()
    batch = _gen(http, ["hello there", "hello there", "hello there"], ["a1", None, "a2"]).json()
    assert batch[0]["output_ids"] == one["output_ids"]
    base = _gen(http, "hello there").json()
    assert batch[1]["output_ids"] == base["output_ids"]
    comp = http.post("/v1/completions", json={"model": f"{MODEL_NAME}:a1", "prompt": "hello there", "max_tokens": 4,
                                                "temperature": 0})
    assert comp.status_code == 200, comp.text
    comp2 = http.post("/v1/completions", json={"model": "a1", "prompt": "hello there", "max_tokens": 4, "temperature": 0})
    assert comp2.json()["choices"][0]["text"] == comp.json()["choices"][0]["text"]
    chat = http.post("/v1/chat/completions", json={"model": "a2", "messages": [{"role": "user", "content": "hi"}],
                                                   "max_tokens": 3})
    assert chat.status_code == 200, chat.text


def test_unknown_adapters_are_400(http):
    err = assert_error_body(_gen(http, "hi", "nope"), 400)
    assert "'nope' is not loaded" in err["message"] and "a1" in err["message"]
    err = assert_error_body(http.post("/v1/completions", json={"model": f"{MODEL_NAME}:nope", "prompt": "x"}), 400)
    assert "'nope'" in err["message"]
    assert_error_body(http.post("/v1/completions", json={"model": "other-model", "prompt": "x"}), 404)


def test_load_and_unload_routes(http, lora_dirs):
    _, adapters = lora_dirs["llama"]
    r = http.post("/load_lora_adapter", json={"lora_name": "a3", "lora_path": adapters["a3"]})
    assert r.status_code == 200 and "a3" in r.json()["loaded_adapters"], r.text
    assert _gen(http, "hi", "a3").status_code == 200
    err = assert_error_body(http.post("/load_lora_adapter", json={"lora_name": "bad", "lora_path": "/nowhere"}), 400)
    assert "is not a directory" in err["message"]
    r = http.post("/unload_lora_adapter", json={"lora_name": "a3"})
    assert r.status_code == 200 and "a3" not in r.json()["loaded_adapters"]
    err = assert_error_body(http.post("/unload_lora_adapter", json={"lora_name": "a3"}), 400)
    assert "no LoRA adapter named 'a3'" in err["message"]
    assert_error_body(_gen(http, "hi", "a3"), 400)
    assert _gen(http, "still serving", "a1").status_code == 200
    wait_kv_idle(http.base_url.__str__().rstrip("/"))
