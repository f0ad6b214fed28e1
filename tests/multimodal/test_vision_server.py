"""A vision-language model behind the HTTP server: /generate with image_data, the OpenAI vision
API through the `openai` client, the radix cache over images, and bad input (each a 400 naming
the problem, after which the server keeps serving)."""

from __future__ import annotations

import base64
import io
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from sglang.testing.fixtures import tiny_vlm_dir
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

MAX_IMAGE_BYTES = 60_000
CONTEXT = 256
GREEDY = {"temperature": 0, "max_new_tokens": 6}


def _png(seed: int, size=(40, 56)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("media")
    (path / "cat.png").write_bytes(_png(7))
    return str(path)


@pytest.fixture(scope="module")
def server(media_dir: str) -> Iterator[ServerProcess]:
    proc = start_server(tiny_vlm_dir("llava"), ["--device", "cpu", "--context-length", str(CONTEXT),
                                                "--max-image-bytes", str(MAX_IMAGE_BYTES),
                                                "--allow-local-media-path", media_dir])
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def mark(http: httpx.Client) -> str:
    return http.get("/get_model_info").json()["image_token"]


def _generate(http: httpx.Client, text: str, images, **extra) -> httpx.Response:
    return http.post("/generate", json={"text": text, "image_data": images, "sampling_params": GREEDY, **extra})


def _message(out: httpx.Response) -> str:
    """The error message of a native-route error body."""
    return out.json()["message"]


def _still_serving(http: httpx.Client, mark: str) -> None:
    assert http.get("/health").status_code == 200
    ok = _generate(http, f"{mark}ok?", _data_url(_png(1)))
    assert ok.status_code == 200, ok.text


def test_model_info_says_multimodal(http: httpx.Client) -> None:
    info = http.get("/get_model_info").json()
    assert info["is_multimodal"] and info["supports_images"] and not info["supports_video"]
    assert "<image>" in info["image_token"]


def test_generate_with_an_image_and_radix_reuse(http: httpx.Client, mark: str) -> None:
    http.post("/flush_cache")
    text = f"{mark}What is in the picture?"
    first = _generate(http, text, _data_url(_png(2))).json()
    again = _generate(http, text, _data_url(_png(2))).json()
    other = _generate(http, text, _data_url(_png(3))).json()
    n = first["meta_info"]["prompt_tokens"]
    assert n > 10 and again["text"] == first["text"]
    assert again["meta_info"]["cached_tokens"] >= n - 1
    image_start = text.index(mark)  # the text before the image is all that may be shared
    assert other["meta_info"]["cached_tokens"] <= image_start + 1


def test_generate_batch_with_one_image_list_per_prompt(http: httpx.Client, mark: str) -> None:
    texts = [f"{mark}one", f"{mark}{mark}two", "three"]
    images = [_data_url(_png(4)), [_data_url(_png(5)), _data_url(_png(6))], None]
    out = _generate(http, texts, images)
    assert out.status_code == 200, out.text
    alone = [_generate(http, t, i).json()["text"] for t, i in zip(texts, images)]
    assert [o["text"] for o in out.json()] == alone


def test_local_file_inside_the_allowed_directory(http: httpx.Client, mark: str, media_dir: str) -> None:
    by_path = _generate(http, f"{mark}cat?", f"{media_dir}/cat.png")
    by_data = _generate(http, f"{mark}cat?", _data_url(_png(7)))
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["text"] == by_data.json()["text"]


def test_openai_vision_chat(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": _data_url(_png(8)), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": _data_url(_png(9))}},
    ]}]
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, max_tokens=6)
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 20  # both images' placeholder tokens are counted
    chunks = oai.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, max_tokens=6,
                                         stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content


class _Quiet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = _png(10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def loopback_url() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/cat.png"
    httpd.shutdown()


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


BAD_IMAGES = {
    "corrupt": (lambda url: _data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), "could not decode"),
    "unsupported format": (lambda url: _data_url(_tiff(), "image/tiff"), "TIFF"),
    "too large": (lambda url: _data_url(_png(11, size=(300, 300))), "--max-image-bytes"),
    "private address": (lambda url: url, "private"),
    "path outside the allowed directory": (lambda url: "/etc/hostname", "outside"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_are_400s_and_the_server_keeps_serving(http: httpx.Client, mark: str, loopback_url: str,
                                                          case: str) -> None:
    make, expected = BAD_IMAGES[case]
    out = _generate(http, f"{mark}bad?", make(loopback_url))
    assert out.status_code == 400, out.text
    assert expected.lower() in _message(out).lower(), out.text
    _still_serving(http, mark)


def test_bad_image_in_openai_chat_is_a_400(oai: openai.OpenAI, http: httpx.Client, mark: str) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(openai.BadRequestError, match="decode"):
        oai.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=4)
    _still_serving(http, mark)


def test_too_many_images_for_the_context_is_a_400(http: httpx.Client, mark: str) -> None:
    images = [_data_url(_png(20 + i)) for i in range(30)]
    out = _generate(http, mark * len(images) + "so many", images)
    assert out.status_code == 400, out.text
    assert "context" in _message(out)
    _still_serving(http, mark)


def test_placeholder_count_mismatch_is_a_400(http: httpx.Client, mark: str) -> None:
    out = _generate(http, f"{mark}{mark}two marks", [_data_url(_png(12))])
    assert out.status_code == 400 and "2 image(s)" in _message(out)
    out = _generate(http, [f"{mark}a", f"{mark}b"], [_data_url(_png(12))])
    assert out.status_code == 400 and "one entry per prompt" in _message(out)


def test_video_to_an_image_only_model_is_a_400(http: httpx.Client) -> None:
    out = http.post("/generate", json={"text": "x", "video_data": [[_data_url(_png(13))]],
                                       "sampling_params": GREEDY})
    assert out.status_code == 400 and "video" in _message(out)
