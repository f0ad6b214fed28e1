"""An architecture we do not implement (tiny GPT-2) served over HTTP through the transformers
fallback; and the clear refusal of `--model-impl sglang` for it."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from sglang.testing.hf_reference import hf_greedy
from sglang.testing.tiny_foreign import foreign_model_dir
from tests.server.server_process import MODEL_NAME, REPO_ROOT, start_server


def test_server_serves_gpt2_through_the_fallback():
    path = foreign_model_dir("gpt2")
    server = start_server(path, ["--device", "cpu", "--dtype", "float32"])
    try:
        prompts = [[5, 17, 300, 42], [9, 8, 7, 6, 5, 4, 3, 2, 1]]
        body = {"model": MODEL_NAME, "prompt": prompts, "max_tokens": 6, "temperature": 0,
                "logprobs": 1}
        r = httpx.post(server.base_url + "/v1/completions", json={**body, "ignore_eos": True}, timeout=120)
        assert r.status_code == 200, r.text
        choices = sorted(r.json()["choices"], key=lambda c: c["index"])
        ref = hf_greedy(path, prompts, 6)
        got = [httpx.post(server.base_url + "/generate", timeout=120, json={
            "input_ids": p, "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True},
        }).json()["output_ids"] for p in prompts]
        assert got == ref and all(len(c["logprobs"]["tokens"]) == 6 for c in choices)
        assert server.log().count("transformers fallback") >= 1 and "GPT2LMHeadModel" in server.log()
    finally:
        assert server.terminate() == 0


def test_model_impl_sglang_refuses_gpt2_naming_it_and_the_flag():
    done = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--model-path", foreign_model_dir("gpt2"),
         "--device", "cpu", "--model-impl", "sglang"],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "GPT2LMHeadModel" in done.stderr and "--model-impl transformers" in done.stderr, done.stderr[-3000:]
