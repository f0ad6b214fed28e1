"""bench_serving: SSE parsing, latency math, arrival schedule, and whole runs against servers.

A small fake server (FastAPI in a thread) streams known chunk patterns, so the measured numbers
can be checked exactly; the real `sglang.launch_server` on the tiny llama checks the three
backends end to end.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
from typing import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.bench_serving import parse_args, run_benchmark
from sglang.benchmark.datasets import random_requests, shared_prefix_requests
from sglang.benchmark.load_generator import arrival_gaps, run_load
from sglang.benchmark.request_record import Chunk, RequestOutput, split_chunk_latencies
from sglang.benchmark.serving_metrics import finalize_output, latency_stats, summarize
from sglang.benchmark.sse import DONE, SSEError, iter_sse_events, parse_sse_line
from sglang.testing.fixtures import tiny_model_dir

# ---------------------------------------------------------------- SSE parsing


def test_parse_sse_line_kinds() -> None:
    assert parse_sse_line('data: {"text": "a"}\n') == {"text": "a"}
    assert parse_sse_line("data:[DONE]") == DONE
    assert parse_sse_line(": keep-alive") is None
    assert parse_sse_line("") is None
    assert parse_sse_line("event: ping") is None
    with pytest.raises(SSEError, match="not JSON"):
        parse_sse_line("data: {truncated")


def test_iter_sse_events_stops_at_done_and_raises_on_error_events() -> None:
    async def lines(items: list[str]):
        for item in items:
            yield item

    async def collect(items: list[str]) -> list[dict]:
        return [e async for e in iter_sse_events(lines(items))]

    got = asyncio.run(collect(['data: {"a": 1}', "", 'data: {"a": 2}', "data: [DONE]", 'data: {"a": 3}']))
    assert got == [{"a": 1}, {"a": 2}]
    with pytest.raises(SSEError, match="boom"):
        asyncio.run(collect(['data: {"error": {"message": "boom"}}']))


# ---------------------------------------------------------------- latency math


def test_multi_token_chunk_gap_is_split_evenly() -> None:
    chunks = [Chunk(1.5, 1), Chunk(2.0, 1), Chunk(3.0, 4), Chunk(3.1, None)]
    ttft, itl = split_chunk_latencies(chunks, start_time=1.0)
    assert ttft == pytest.approx(0.5)
    assert itl == pytest.approx([0.5, 0.25, 0.25, 0.25, 0.25, 0.1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 5)), min_size=1, max_size=30),
       st.floats(0.0, 1.0))
def test_itl_accounts_for_every_token_and_all_the_time(gaps_tokens, tail: float) -> None:
    t, chunks = 0.0, []
    for gap, k in gaps_tokens:
        t += gap
        chunks.append(Chunk(t, k))
    out = RequestOutput(success=True, start_time=0.0, latency=t + tail, chunks=chunks,
                        server_output_len=sum(k for _, k in gaps_tokens))
    finalize_output(out, count_tokens=lambda text: pytest.fail("server count must win"))
    assert len(out.itl) == out.output_len - gaps_tokens[0][1]  # first chunk's tokens have no gap
    assert out.ttft + sum(out.itl) == pytest.approx(t)
    assert out.ttft <= out.latency + 1e-12
    if out.output_len > 1:
        assert 0.0 <= out.tpot <= out.latency


def test_summarize_throughput_concurrency_and_failures() -> None:
    def done(start: float, latency: float, n: int) -> RequestOutput:
        out = RequestOutput(success=True, prompt_len=10, start_time=start, latency=latency, server_output_len=n,
                            chunks=[Chunk(start + 0.1 * (i + 1), 1) for i in range(n)])
        finalize_output(out, len)
        return out

    bad = RequestOutput(success=False, error="HTTP 400: nope", prompt_len=10)
    m = summarize([done(0.0, 1.0, 4), done(0.0, 2.0, 4), bad, RequestOutput(success=False, error="later")], 4.0)
    assert (m["completed"], m["failed"], m["first_error"]) == (2, 2, "HTTP 400: nope")
    assert m["total_input_tokens"] == 20 and m["total_output_tokens"] == 8
    assert m["request_throughput"] == pytest.approx(0.5) and m["output_throughput"] == pytest.approx(2.0)
    assert m["concurrency"] == pytest.approx(0.75)
    assert m["mean_ttft_ms"] == pytest.approx(100.0) and m["mean_itl_ms"] == pytest.approx(100.0)
    assert m["median_e2e_latency_ms"] == pytest.approx(1500.0)
    assert m["mean_tpot_ms"] == pytest.approx(((1.0 - 0.1) / 3 + (2.0 - 0.1) / 3) / 2 * 1000)
    assert latency_stats([])["p99"] == 0.0
    with pytest.raises(ValueError, match="duration"):
        summarize([], 0.0)


def test_output_len_falls_back_to_retokenizing() -> None:
    out = RequestOutput(success=True, generated_text="a b c", latency=1.0, chunks=[Chunk(0.2, None)] * 3)
    finalize_output(out, lambda text: len(text.split()))
    assert out.output_len == 3 and out.ttft == pytest.approx(0.2)


# ---------------------------------------------------------------- arrivals and datasets


def test_arrival_gaps_infinite_and_poisson() -> None:
    assert arrival_gaps(5, math.inf, 0) == [0.0] * 5
    gaps = arrival_gaps(4000, 50.0, seed=3)
    assert gaps[0] == 0.0 and gaps == arrival_gaps(4000, 50.0, seed=3)
    assert sum(gaps) / (len(gaps) - 1) == pytest.approx(1 / 50.0, rel=0.1)  # mean gap 1/rate
    with pytest.raises(ValueError, match="request-rate"):
        arrival_gaps(3, 0.0, 0)


def test_run_load_respects_max_concurrency() -> None:
    in_flight, peak = [0], [0]

    async def send(x: int) -> int:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1
        return x * 2

    outs, duration = asyncio.run(run_load(list(range(12)), send, math.inf, 3, 0, show_progress=False))
    assert outs == [x * 2 for x in range(12)] and peak[0] == 3 and duration >= 0.04


@pytest.fixture(scope="module")
def llama_dir() -> str:
    return tiny_model_dir("llama")


def test_text_datasets_round_trip_to_asked_lengths(llama_dir: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_dir)
    reqs = random_requests(tok, len(tok), 6, 40, 8, range_ratio=1.0, seed=2, as_text=True)
    assert all(len(r.input_ids) == 40 and tok.encode(r.text, add_special_tokens=False) == r.input_ids for r in reqs)
    groups = shared_prefix_requests(tok, len(tok), 2, 3, 24, 6, 5, seed=2, as_text=True)
    prefixes = {tuple(r.input_ids[:24]) for r in groups}
    assert len(groups) == 6 and len(prefixes) == 2 and all(len(r.input_ids) == 30 for r in groups)


# ---------------------------------------------------------------- against a fake server


def _fake_app(model_dir: str, chunk_tokens: int) -> FastAPI:
    app = FastAPI()
    app.state.flushes = 0

    def sse(events: Iterator[dict]) -> StreamingResponse:
        async def body():
            for event in events:
                await asyncio.sleep(0.002)
                yield f"data: {json.dumps(event)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(body(), media_type="text/event-stream")

    def steps(n: int) -> list[int]:  # cumulative token counts, `chunk_tokens` per chunk
        return [min(i, n) for i in range(chunk_tokens, n + chunk_tokens, chunk_tokens)]

    @app.get("/get_model_info")
    async def model_info():
        return {"model_path": model_dir, "tokenizer_path": model_dir}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

    @app.post("/flush_cache")
    async def flush():
        app.state.flushes += 1
        return {"success": True}

    @app.post("/generate")
    async def generate(request: Request):
        body = await request.json()
        if body.get("fail"):
            return JSONResponse({"object": "error", "message": "fail requested"}, status_code=400)
        n = body["sampling_params"]["max_new_tokens"]
        return sse({"text": " x" * c, "meta_info": {"completion_tokens": c}} for c in steps(n))

    @app.post("/v1/completions")
    async def completions(request: Request):
        n = (await request.json())["max_tokens"]
        events = [{"choices": [{"index": 0, "text": " x"}]} for _ in range(n)]
        return sse(events + [{"choices": [], "usage": {"completion_tokens": n}}])

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        n = (await request.json())["max_tokens"]
        role = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        deltas = [{"choices": [{"index": 0, "delta": {"content": " x"}}]} for _ in range(n)]
        return sse(role + deltas + [{"choices": [], "usage": {"completion_tokens": n}}])

    return app


@pytest.fixture(scope="module")
def fake_server(llama_dir: str):
    import uvicorn

    port = _free_port()
    app = _fake_app(llama_dir, chunk_tokens=3)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "fake server did not start"
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench(url: str, *extra: str) -> dict:
    return run_benchmark(parse_args(["--base-url", url, "--disable-tqdm", *extra]))


@pytest.mark.parametrize("backend", ["sglang", "openai", "openai-chat"])
def test_fake_server_runs_measure_every_token(fake_server, backend: str, tmp_path) -> None:
    app, url = fake_server
    flushes = app.state.flushes
    out_file = tmp_path / "res.jsonl"
    m = _bench(url, "--backend", backend, "--num-prompts", "6", "--random-input-len", "12",
               "--random-output-len", "7", "--random-range-ratio", "1", "--flush-cache",
               "--output-file", str(out_file))
    assert (m["completed"], m["failed"], m["total_output_tokens"]) == (6, 0, 42)
    assert m["total_input_tokens"] == 72
    assert app.state.flushes == flushes + 1
    d = m["details"]
    assert d["output_lens"] == [7] * 6 and d["generated_texts"] == [" x" * 7] * 6
    # sglang sends chunks of 3+3+1 tokens: the first brings 3 tokens with no gap -> 4 ITLs.
    assert [len(itl) for itl in d["itls"]] == [4 if backend == "sglang" else 6] * 6
    assert all(t <= e for t, e in zip(d["ttfts"], d["e2e_latencies"]))
    saved = json.loads(out_file.read_text().splitlines()[-1])
    assert saved["completed"] == 6 and "itls" not in saved and saved["backend"] == backend


def test_fake_server_failures_are_counted_with_first_error(fake_server) -> None:
    _, url = fake_server
    m = _bench(url, "--num-prompts", "4", "--random-input-len", "8", "--random-output-len", "4",
               "--warmup-requests", "0", "--extra-request-body", '{"fail": true}', "--request-rate", "200")
    assert m["completed"] == 0 and m["failed"] == 4
    assert "HTTP 400" in m["first_error"] and "fail requested" in m["first_error"]
    assert m["total_output_tokens"] == 0 and m["mean_ttft_ms"] == 0.0


def test_unreachable_server_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="--base-url"):
        _bench(f"http://127.0.0.1:{_free_port()}", "--num-prompts", "1")


# ---------------------------------------------------------------- against the real server


@pytest.fixture(scope="module")
def real_server(llama_dir: str, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", llama_dir, "--port", str(port),
           "--device", "cpu", "--max-total-tokens", "4096", "--log-level", "warning",
           "--skip-server-warmup"]  # bench_serving sends its own warm-up request
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_healthy(proc: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server not healthy within 120 s:\n{log.read_text()[-3000:]}")


def _check_consistent(m: dict, n: int, out_len: int) -> None:
    assert (m["completed"], m["failed"]) == (n, 0), m["first_error"]
    d = m["details"]
    assert d["output_lens"] == [out_len] * n  # ignore_eos: every output has the asked length
    assert m["total_output_tokens"] == n * out_len
    assert all(0 < t <= e for t, e in zip(d["ttfts"], d["e2e_latencies"]))
    assert all(t + sum(itl) <= e + 1e-6 for t, itl, e in zip(d["ttfts"], d["itls"], d["e2e_latencies"]))
    assert 0 < m["concurrency"] <= n + 1e-6
    assert m["mean_tpot_ms"] > 0 and m["p99_itl_ms"] >= m["median_itl_ms"] > 0
    assert m["output_throughput"] == pytest.approx(m["total_output_tokens"] / m["duration"])


@pytest.mark.parametrize("backend,dataset", [("sglang", "random"), ("openai", "random-ids"), ("openai-chat", "random")])
def test_real_server_random(real_server: str, backend: str, dataset: str) -> None:
    m = _bench(real_server, "--backend", backend, "--dataset-name", dataset, "--num-prompts", "16",
               "--random-input-len", "32", "--random-output-len", "8", "--random-range-ratio", "1",
               "--max-concurrency", "8")
    _check_consistent(m, 16, 8)
    assert m["total_input_tokens"] == 16 * 32


def test_real_server_shared_prefix_with_poisson_arrivals(real_server: str) -> None:
    m = _bench(real_server, "--dataset-name", "generated-shared-prefix", "--gsp-num-groups", "2",
               "--gsp-prompts-per-group", "6", "--gsp-system-prompt-len", "64", "--gsp-question-len", "8",
               "--gsp-output-len", "6", "--request-rate", "40", "--flush-cache")
    _check_consistent(m, 12, 6)
    assert m["total_input_tokens"] == 12 * 72 and m["num_prompts"] == 12
