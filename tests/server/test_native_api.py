"""Native routes: /generate (single, batch, ids, stream, logprobs), info, tokenizer, cache, abort,
disconnects, /metrics and /v1/models."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.http_helpers import DONE, assert_error_body, stream_events, wait_kv_idle

GREEDY = {"temperature": 0, "max_new_tokens": 8}
LONG = {"temperature": 0, "max_new_tokens": 1000, "ignore_eos": True}
METRIC_NAMES = ("prompt_tokens_total", "generation_tokens_total", "cached_tokens_total", "num_requests_total",
                "num_aborted_requests_total", "time_to_first_token_seconds", "inter_token_latency_seconds",
                "e2e_request_latency_seconds", "num_running_reqs", "num_queue_reqs", "token_usage",
                "cache_hit_rate", "gen_throughput")


def generate(http, **body) -> dict:
    response = http.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_generate_text_ids_and_batch_agree(http):
    one = generate(http, text="Hello there", sampling_params=GREEDY)
    meta = one["meta_info"]
    assert meta["finish_reason"]["type"] in ("length", "stop") and meta["completion_tokens"] == len(one["output_ids"])
    ids = http.post("/tokenize", json={"prompt": "Hello there"}).json()["tokens"]
    assert generate(http, input_ids=ids, sampling_params=GREEDY)["text"] == one["text"]
    batch = generate(http, text=["Hello there", "Good night"], sampling_params=GREEDY)
    assert isinstance(batch, list) and batch[0]["text"] == one["text"]
    assert batch[1]["text"] == generate(http, text="Good night", sampling_params=GREEDY)["text"]


def test_generate_stream_is_cumulative(http):
    whole = generate(http, text="Stream me", sampling_params=GREEDY)
    events = stream_events(http, "/generate", {"text": "Stream me", "sampling_params": GREEDY, "stream": True})
    assert events[-1] == DONE
    chunks = events[:-1]
    counts = [c["meta_info"]["completion_tokens"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == whole["meta_info"]["completion_tokens"]
    assert all(whole["text"].startswith(c["text"]) for c in chunks)
    assert chunks[-1]["text"] == whole["text"] and chunks[-1]["meta_info"]["finish_reason"] is not None
    assert all(c["meta_info"]["finish_reason"] is None for c in chunks[:-1])


def test_generate_logprobs_and_n(http):
    out = generate(http, text="Count: one two", sampling_params=GREEDY, return_logprob=True, logprob_start_len=0,
                   top_logprobs_num=2, return_text_in_logprobs=True)
    meta = out["meta_info"]
    assert len(meta["input_token_logprobs"]) == meta["prompt_tokens"] and meta["input_token_logprobs"][0][0] is None
    assert len(meta["output_token_logprobs"]) == meta["completion_tokens"]
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    samples = generate(http, text="Count:", sampling_params={"max_new_tokens": 4, "n": 3, "temperature": 1.0})
    assert isinstance(samples, list) and len(samples) == 3


def test_model_and_server_info(http, server):
    info = http.get("/get_model_info").json()
    assert info["is_generation"] is True and info["context_length"] == 1024
    server_info = http.get("/get_server_info").json()
    for key in ("available_kv_tokens", "cached_tokens", "max_total_num_tokens", "num_running_reqs", "model_path"):
        assert key in server_info
    assert "api_key" not in server_info
    assert http.get("/server_info").json()["max_total_num_tokens"] == server_info["max_total_num_tokens"]


def test_tokenize_detokenize_round_trip(http):
    text = "Round trip: ünïcödé, numbers 12345 and spaces  !"
    tokens = http.post("/tokenize", json={"prompt": text, "add_special_tokens": False}).json()
    assert tokens["count"] == len(tokens["tokens"]) and tokens["max_model_len"] == 1024
    assert http.post("/detokenize", json={"tokens": tokens["tokens"]}).json()["text"] == text
    with_bos = http.post("/tokenize", json={"prompt": [text, "b"]}).json()
    assert with_bos["tokens"][0][1:] == tokens["tokens"] and len(with_bos["tokens"]) == 2
    assert http.post("/detokenize", json={"tokens": with_bos["tokens"]}).json()["text"] == [text, "b"]


def test_flush_cache_empties_radix_tree(http):
    generate(http, text="cache me please", sampling_params=GREEDY)
    assert http.get("/get_server_info").json()["cached_tokens"] > 0
    assert http.post("/flush_cache").json()["success"] is True
    assert http.get("/get_server_info").json()["cached_tokens"] == 0


def test_health_routes(http):
    assert http.get("/health").status_code == 200
    assert http.get("/health_generate").status_code == 200


def test_models_routes(oai, model, http):
    listed = oai.models.list().data
    assert [m.id for m in listed] == [model]
    assert oai.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("unknown-model")
    assert_error_body(http.post("/v1/embeddings", json={"input": "x", "model": model}), 400)


def _metrics(http) -> dict:
    text = http.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.name.startswith("sglang:"), sample.name
            assert sample.labels.get("model_name") == "tiny-llama", sample
            samples[sample.name] = sample.value
    return samples


def test_metrics_content_and_counting(http):
    before = _metrics(http)
    for name in METRIC_NAMES:
        assert any(key.startswith("sglang:" + name) for key in before), name
    out = generate(http, text="metrics please", sampling_params=GREEDY)
    after = _metrics(http)
    assert after["sglang:num_requests_total"] == before["sglang:num_requests_total"] + 1
    assert after["sglang:generation_tokens_total"] - before["sglang:generation_tokens_total"] == \
        out["meta_info"]["completion_tokens"]
    assert after["sglang:e2e_request_latency_seconds_count"] == before["sglang:e2e_request_latency_seconds_count"] + 1
    assert 0.0 <= after["sglang:cache_hit_rate"] <= 1.0


def test_disconnect_mid_stream_frees_kv(http, server):
    before = _metrics(http)["sglang:num_aborted_requests_total"]
    for route, body in (("/generate", {"text": "long story", "sampling_params": LONG, "stream": True}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "go"}], "stream": True,
                                                  "max_tokens": 1000, "ignore_eos": True})):
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            with client.stream("POST", route, json=body) as response:
                lines = response.iter_lines()
                got = [next(lines) for _ in range(4)]
                assert any(line.startswith("data:") for line in got)
        # the client is closed here, mid-generation
    wait_kv_idle(server.base_url)
    assert _metrics(http)["sglang:num_aborted_requests_total"] >= before + 2


def test_abort_request_ends_running_request(http, server):
    results = {}

    def run():
        results["response"] = httpx.post(server.base_url + "/generate", timeout=60,
                                         json={"text": "abort me", "rid": "abort-me", "sampling_params": LONG})

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while http.get("/get_server_info").json()["num_running_reqs"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert http.post("/abort_request", json={"rid": "abort-me"}).json()["success"] is True
    worker.join(30)
    body = assert_error_body(results["response"], 400)
    assert "abort" in body["message"]
    wait_kv_idle(server.base_url)


def test_abort_parent_rid_ends_every_sample(http, server):
    results = {}

    def run():
        body = {"prompt": "abort all samples", "rid": "abort-n", "n": 2, "max_tokens": 1000, "ignore_eos": True}
        results["response"] = httpx.post(server.base_url + "/v1/completions", timeout=60, json=body)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while http.get("/get_server_info").json()["num_running_reqs"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    http.post("/abort_request", json={"rid": "abort-n"})
    worker.join(30)
    assert "abort" in assert_error_body(results["response"], 400)["message"]
    wait_kv_idle(server.base_url)


def test_abort_mid_stream_ends_with_error_event(http, server):
    body = {"text": "abort my stream", "rid": "abort-stream", "sampling_params": LONG, "stream": True}
    events = []
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        with client.stream("POST", "/generate", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
                    if len(events) == 2:
                        http.post("/abort_request", json={"rid": "abort-stream"})
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == 400 and "abort" in error["message"]
    assert all("error" not in json.loads(e) for e in events[:-2])
    wait_kv_idle(server.base_url)


def test_disconnect_before_non_streamed_answer_aborts(http, server):
    aborted = _metrics(http)["sglang:num_aborted_requests_total"]
    with pytest.raises(httpx.ReadTimeout):  # the client gives up long before 1000 tokens are done
        httpx.post(server.base_url + "/v1/completions", timeout=0.5,
                   json={"prompt": "never mind", "max_tokens": 1000, "ignore_eos": True})
    wait_kv_idle(server.base_url, timeout=2.0)  # freed at once, not after the remaining ~1000 steps
    assert _metrics(http)["sglang:num_aborted_requests_total"] == aborted + 1
