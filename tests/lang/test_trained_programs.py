"""Programs on the trained tiny checkpoint, whose greedy text is predictable: API speculative
execution against our server's OpenAI API, and every example in examples/ running on it (the
examples' offline fallback; their answers are checked on SmolLM2 in test_examples_smollm2.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sglang as sgl
from sglang.lang.backend.openai_backend import OpenAI

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def extraction(num_api_spec_tokens):
    @sgl.function(num_api_spec_tokens=num_api_spec_tokens)
    def extract(s):
        s += "Name:" + sgl.gen("name", stop="\n", max_tokens=8)
        s += "\nAge:" + sgl.gen("age", stop="\n", max_tokens=8)
        s += "\nJob:" + sgl.gen("job", stop="\n", max_tokens=8)
    return extract


def test_api_speculative_execution_halves_calls(trained_runtime) -> None:
    calls, values = {}, {}
    for spec in (None, 32):
        api = OpenAI("default", base_url=trained_runtime.url + "/v1", is_chat_model=False,
                     max_retries=0)
        state = extraction(spec).run(backend=api, temperature=0)
        assert state.error() is None, state.error()
        calls[spec], values[spec] = api.num_api_calls, state.variables()
        api.shutdown()
    print(f"3-field extraction API calls: {calls[None]} without speculation, {calls[32]} with")
    assert values[None] == values[32] == {"name": " Alice", "age": " 31", "job": " pilot"}
    assert calls[None] >= 2 * calls[32]


def test_api_speculative_compiled_and_batch(trained_runtime) -> None:
    api = OpenAI("default", base_url=trained_runtime.url + "/v1", is_chat_model=False, max_retries=0)
    compiled = extraction(32).compile(backend=api)
    states = compiled.run_batch([{}, {}, {}], temperature=0)
    assert [s["job"] for s in states] == [" pilot"] * 3
    assert compiled.stats["api_speculative"] == {"spec_groups": 1, "gens_merged": 3}
    assert api.num_api_calls == 3
    api.shutdown()


def test_select_on_trained_model(trained_runtime) -> None:
    @sgl.function
    def review(s, text):
        s += "Review: " + text + " Sentiment:" + sgl.select("s", choices=[" positive", " negative"])

    assert review.run(text="I loved it.", backend=trained_runtime)["s"] == " positive"
    assert review.run(text="It was awful.", backend=trained_runtime)["s"] == " negative"


@pytest.mark.parametrize("script, expected", [
    ("quick_start.py", "assistant: "), ("few_shot.py", "answer:"), ("fork_tips.py", "capital of Japan:"),
    ("regex_json.py", "schema: {'name': "), ("select_choice.py", "tool: "), ("streaming.py", ""),
    ("run_batch.py", "asyncio:"), ("openai_backend.py", "select via echo logprobs"),
])
def test_example_runs(trained_runtime, script: str, expected: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--url", trained_runtime.url],
                         capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() and expected in out.stdout, out.stdout
