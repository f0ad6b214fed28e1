"""Video on the server (tiny Qwen2-VL): /generate with video_data (a file, or a list of frames),
and the OpenAI chat `video_url` part beside an image; a video file and its frames sent as images
of a list give the same answer."""

from __future__ import annotations

import base64
import io
from typing import Iterator, List

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from sglang.testing.fixtures import tiny_vlm_dir
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server

av = pytest.importorskip("av")
GREEDY = {"temperature": 0, "max_new_tokens": 6}
FRAMES = 4


def _frames() -> List[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (56, 84, 3), dtype=np.uint8) for _ in range(FRAMES)]


def _png_url(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _mkv_url() -> str:
    """The frames as a lossless video file (FFV1 in Matroska), so decoding gives the same pixels."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=2)
        stream.width, stream.height, stream.pix_fmt = 84, 56, "bgr0"
        for pixels in _frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="bgr0")))
        container.mux(stream.encode())
    return "data:video/x-matroska;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = start_server(tiny_vlm_dir("qwen2_vl"), ["--device", "cpu"])
    yield proc
    proc.terminate()


def _generate(http: httpx.Client, **media) -> dict:
    out = http.post("/generate", json={"text": "<|vision_start|><|video_pad|><|vision_end|>What happens?",
                                       "sampling_params": GREEDY, **media})
    assert out.status_code == 200, out.text
    return out.json()


def test_video_file_and_frame_list_agree(http: httpx.Client) -> None:
    info = http.get("/get_model_info").json()
    assert info["supports_video"] and "<|video_pad|>" in info["video_token"]
    by_file = _generate(http, video_data=_mkv_url())
    by_frames = _generate(http, video_data=[[_png_url(f) for f in _frames()]])
    assert by_file["text"] == by_frames["text"]
    assert by_file["meta_info"]["prompt_tokens"] == by_frames["meta_info"]["prompt_tokens"] > 10


def test_openai_chat_with_video_url_and_image(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": _mkv_url()}},
        {"type": "image_url", "image_url": {"url": _png_url(_frames()[0])}},
        {"type": "text", "text": "Is the picture a frame of the video?"},
    ]}]
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, max_tokens=6)
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 20


def test_too_many_frames_is_a_400(http: httpx.Client) -> None:
    frames = [_png_url(f) for f in _frames()] * 20  # 80 frames > --max-video-frames (64)
    out = http.post("/generate", json={"text": "<|vision_start|><|video_pad|><|vision_end|>x",
                                       "video_data": [frames], "sampling_params": GREEDY})
    assert out.status_code == 400 and "--max-video-frames" in out.json()["message"]
