"""A GGUF file as --model-path through the whole runtime: the offline Engine, the HTTP server
(`python -m sglang.launch_server --model-path model.gguf`), and the benchmark CLIs."""

from __future__ import annotations

import httpx

import sglang
from sglang import bench_offline_throughput, bench_one_batch
from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_gguf_path, tiny_model_dir
from sglang.testing.hf_reference import hf_greedy
from tests.engine.prompts import prompt_ids
from tests.server.server_process import MODEL_NAME, start_server

NEW_TOKENS = 12


def test_engine_serves_a_gguf_file_like_its_safetensors_checkpoint():
    path = tiny_gguf_path("qwen2")
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        assert engine.tokenizer.chat_template == get_tokenizer(tiny_model_dir("qwen2")).chat_template
        prompts = prompt_ids(engine.tokenizer, n=4)
        outs = engine.generate(input_ids=prompts, sampling_params={"max_new_tokens": NEW_TOKENS, "temperature": 0,
                                                                   "ignore_eos": True})
        assert [o["output_ids"] for o in outs] == hf_greedy(tiny_model_dir("qwen2"), prompts, NEW_TOKENS)


def test_server_serves_a_gguf_file_with_its_chat_template():
    server = start_server(tiny_gguf_path("llama"), ["--device", "cpu"])
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as http:
            info = http.get("/get_model_info").json()
            assert info["model_path"].endswith(".gguf")
            reply = http.post("/v1/chat/completions", json={
                "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                "temperature": 0})
            assert reply.status_code == 200, reply.text
            expected = get_tokenizer(tiny_model_dir("llama")).apply_chat_template(
                [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_dict=False)
            assert reply.json()["usage"]["prompt_tokens"] == len(expected)  # the file's chat template
    finally:
        server.terminate()


def test_bench_one_batch_on_a_gguf_file():
    (rec,) = bench_one_batch.main(["--model-path", tiny_gguf_path("llama"), "--device", "cpu", "--batch-size", "2",
                                   "--input-len", "8", "--output-len", "3"])
    assert rec["model_path"].endswith(".gguf") and rec["decode_steps"] == 2


def test_bench_offline_throughput_on_a_gguf_file(tmp_path):
    report = bench_offline_throughput.main([
        "--model-path", tiny_gguf_path("llama", "Q8_0"), "--device", "cpu", "--num-prompts", "4",
        "--random-input-len", "8", "--random-output-len", "4", "--random-range-ratio", "1",
        "--compare-transformers", "--hf-batch-size", "2"])
    assert report["sglang"]["output_tokens"] == 4 * 4
    assert report["transformers"]["batch_2"]["output_tokens"] == 4 * 4
