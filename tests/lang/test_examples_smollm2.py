"""Every example in examples/ and the demo's HTTP client on their default model,
SmolLM2-135M-Instruct (GGUF), checking that the printed answers are right or on topic (slow on
a small CPU: minutes).

Needs the model file in the cache (`python -m sglang.testing.models smollm2`, which CI runs);
without it these tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from sglang.lang.backend.runtime import Runtime
from sglang.testing.models import smollm2_gguf_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_runtime() -> Iterator[Runtime]:
    try:
        path = smollm2_gguf_path(fetch=False)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    rt = Runtime(model_path=path, device="cpu", random_seed=0, max_total_tokens=4096)
    yield rt
    rt.shutdown()


def run_example(runtime: Runtime, script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--url", runtime.url],
                         capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def line_after(stdout: str, label: str) -> str:
    """The rest of the printed line starting with `label`."""
    match = re.search("^" + re.escape(label) + "(.*)$", stdout, re.MULTILINE)
    assert match, f"no line starting with {label!r} in:\n{stdout}"
    return match.group(1)


# (script, {line label: words the rest of that line must contain})
EXPECTED = {
    "quick_start.py": {"assistant: The capital of France": ["Paris"],
                       "assistant: The capital of Japan": ["Tokyo"]},
    "few_shot.py": {"answer:": ["Tokyo"]},
    "fork_tips.py": {"tip on a balanced diet:": ["diet"], "tip on regular exercise:": ["exercise"],
                     "capital of France:": ["Paris"], "capital of Japan:": ["Tokyo"],
                     "capital of Italy:": ["Rome"]},
    "regex_json.py": {"regex:": ["'name': 'Alice'", "'age': 31", "'job': 'pilot'"],
                      "schema:": ["'name': 'Alice'", "'age': 31"]},
    "select_choice.py": {"'I loved it.' ->": ["positive"], "'It was awful.' ->": ["negative"],
                         "tool:": ["calculator"]},
    "run_batch.py": {"What is the capital of France? ->": ["Paris"],
                     "What is the capital of Italy? ->": ["Rome"],
                     "What is the capital of Japan? ->": ["Tokyo"],
                     "What colour is the sky? ->": ["lue"], "asyncio:": ["Paris", "Rome"]},
    "openai_backend.py": {"chat:": ["Paris"], "select via echo logprobs:": ["positive"]},
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_answers(smollm2_runtime: Runtime, script: str) -> None:
    stdout = run_example(smollm2_runtime, script)
    for label, words in EXPECTED[script].items():
        rest = line_after(stdout, label)
        assert all(word in rest for word in words), f"{label}{rest}\nexpected {words}"


def test_streaming_example_stays_on_topic(smollm2_runtime: Runtime) -> None:
    stdout = run_example(smollm2_runtime, "streaming.py").lower()  # a sea poem, then autumn
    assert any(word in stdout for word in ("sea", "ocean", "wave")), stdout
    assert "autumn" in stdout, stdout


def test_demo_http_client(smollm2_runtime: Runtime) -> None:
    from sglang.demo import run_program

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_program(smollm2_runtime.url)
    stdout = printed.getvalue()
    assert "Paris" in line_after(stdout, "chat completion:")
    assert "sea" in line_after(stdout, "streamed chat completion:").lower()
    assert re.search(r"'\(\d{3}\) \d{3}-\d{4}'", line_after(stdout, "regex-constrained /generate:"))
    cached = int(re.search(r"(\d+) from the radix cache", line_after(stdout, "again:")).group(1))
    assert cached > 0, stdout
