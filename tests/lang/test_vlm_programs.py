"""`sgl.image` / `sgl.video` programs on a tiny vision-language model, on every runtime backend
(in-process EngineBackend, a Runtime server, a RuntimeEndpoint to it): the text the program builds
carries the model's image mark, any number of images per state, and the answer equals a direct
Engine call with the same prompt and images."""

from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

import sglang as sgl
from sglang.lang.backend.engine_backend import EngineBackend
from sglang.lang.backend.runtime import Runtime
from sglang.testing.fixtures import tiny_vlm_dir

ARGS = {"device": "cpu", "log_level": "warning"}


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@sgl.function
def three_images(s, a, b, c):
    s += sgl.user("A " + sgl.image(a) + " B " + sgl.image(b) + " C " + sgl.image(c) + " which is odd?")
    s += sgl.assistant(sgl.gen("answer", max_tokens=6))


@sgl.function
def after_fork(s, a, b):
    s += sgl.user(sgl.image(a) + "Look.")
    forks = s.fork(2)
    forks[0] += "Then " + sgl.image(b) + sgl.gen("x", max_tokens=4)
    forks[1] += "Only that" + sgl.gen("x", max_tokens=4)
    forks.join()


@pytest.fixture(scope="module")
def vlm_path() -> str:
    return tiny_vlm_dir("qwen2_vl")


@pytest.fixture(scope="module")
def engine_backend(vlm_path: str) -> Iterator[EngineBackend]:
    backend = EngineBackend(model_path=vlm_path, **ARGS)
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def runtime(vlm_path: str) -> Iterator[Runtime]:
    rt = Runtime(model_path=vlm_path, **ARGS)
    yield rt
    rt.shutdown()


def _backends(engine_backend, runtime):
    return {"engine": engine_backend, "runtime": runtime, "endpoint": sgl.RuntimeEndpoint(runtime.url)}


def test_images_in_a_program_on_every_backend(engine_backend, runtime) -> None:
    images = [_png(1), _png(2), _png(3)]
    mark = engine_backend.model_info()["image_token"]
    answers = {}
    for name, backend in _backends(engine_backend, runtime).items():
        state = three_images.run(*images, backend=backend, temperature=0)
        assert state.text().count(mark) == 3, name
        answers[name] = state["answer"]
    assert len(set(answers.values())) == 1, answers
    # The same answer as the engine called directly with the program's prompt and images.
    prompt = three_images.run(*images, backend=engine_backend, temperature=0).text()
    prompt = prompt[: prompt.rindex(answers["engine"])]
    direct = engine_backend.engine.generate(prompt, {"temperature": 0, "max_new_tokens": 6}, image_data=images)
    assert direct["text"] == answers["engine"]


def test_forks_keep_their_own_images(engine_backend) -> None:
    state = after_fork.run(_png(4), _png(5), backend=engine_backend, temperature=0)
    mark = engine_backend.model_info()["image_token"]
    assert state.text().count(mark) == 1  # the parent saw one image; a fork added the second


def test_video_frames_as_images(engine_backend, tmp_path) -> None:
    av = pytest.importorskip("av")
    path = str(tmp_path / "clip.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

    @sgl.function
    def watch(s, video):
        s += sgl.user(sgl.video(video, 2) + "What happens?")
        s += sgl.assistant(sgl.gen("answer", max_tokens=4))

    state = watch.run(path, backend=engine_backend, temperature=0)
    assert state.text().count(engine_backend.model_info()["image_token"]) == 2
    assert state["answer"]
