"""Gemma 3 behind the HTTP server: its image mark ("<start_of_image>", not the placeholder token
the processor expands it into) in /get_model_info, and an OpenAI vision chat that equals /generate
with the chat template's rendering, so the chat path finds the template's marks and the cache
reuses the images' positions."""

from __future__ import annotations

import base64
import io
from typing import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_vlm_dir
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

GREEDY = {"temperature": 0, "max_new_tokens": 6}


def _data_url(seed: int, size=(40, 56)) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = start_server(tiny_vlm_dir("gemma3"), ["--device", "cpu", "--chunked-prefill-size", "8"])
    yield proc
    proc.terminate()


def test_model_info_names_gemma3s_image_mark(http: httpx.Client) -> None:
    info = http.get("/get_model_info").json()
    assert info["image_token"] == "<start_of_image>"


def test_openai_chat_equals_generate_of_the_rendered_prompt(oai: openai.OpenAI, http: httpx.Client) -> None:
    images = [_data_url(1), _data_url(2, (60, 30))]
    content = [{"type": "text", "text": "Compare"}, {"type": "image_url", "image_url": {"url": images[0]}},
               {"type": "text", "text": "with"}, {"type": "image_url", "image_url": {"url": images[1]}}]
    messages = [{"role": "user", "content": content}]
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, max_tokens=6)
    rendered = get_tokenizer(tiny_vlm_dir("gemma3")).apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"},
                                      {"type": "text", "text": "with"}, {"type": "image"}]}],
        tokenize=False, add_generation_prompt=True)
    assert rendered.count("<start_of_image>") == 2
    out = http.post("/generate", json={"text": rendered, "image_data": images, "sampling_params": GREEDY}).json()
    assert reply.choices[0].message.content == out["text"]
    assert reply.usage.prompt_tokens == out["meta_info"]["prompt_tokens"] > 2 * 16
    # Same images, same text: everything but the last token comes from the cache.
    assert out["meta_info"]["cached_tokens"] >= out["meta_info"]["prompt_tokens"] - 1
