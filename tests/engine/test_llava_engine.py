"""LLaVA and LLaVA-NeXT through the whole Engine (float32, CPU): images given as PIL images, bytes and
data URLs; prompt log-probs against transformers; greedy tokens batched vs alone and with a prefill
chunk size that cuts through the images."""

from __future__ import annotations

import base64
import io
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import sglang
from sglang.testing.tiny_vlm import make_tiny_vlm

ARCHS = ["llava", "llava_next"]
SIZES = ((40, 60), (90, 30), (30, 70))  # LLaVA-NeXT grids 2x2, 3x1, 1x3
PROMPTS = [
    "USER: <image>\nWhat is this? ASSISTANT:",
    "USER: <image>\nand<image>\nCompare them. ASSISTANT:",
    "USER: <image><image> then <image> ASSISTANT:",
]
GREEDY = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}


def _pil(seed: int, count: int) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in SIZES[:count]]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # lossless: the same pixels as the PIL image
    return buf.getvalue()


def _data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(image)).decode()


def _as_sent(images: List[Image.Image]) -> List[Any]:
    """The images in the three forms a request may use (PIL, bytes, data URL), in turn."""
    forms = (lambda im: im, _png, _data_url)
    return [forms[i % 3](im) for i, im in enumerate(images)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Dict[str, str]:
    return {arch: make_tiny_vlm(arch, str(tmp_path_factory.mktemp(arch))) for arch in ARCHS}


@torch.inference_mode()
def _hf_token_logprobs(path: str, text: str, images: List[Image.Image]) -> List[float]:
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    inputs = processor(text=[text], images=images, return_tensors="pt")
    ids = inputs["input_ids"][0]
    lp = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
    return lp[torch.arange(len(ids) - 1), ids[1:]].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_prompt_logprobs_match_transformers(checkpoints, arch):
    path = checkpoints[arch]
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        outs = [engine.generate(text, {"max_new_tokens": 1}, image_data=_as_sent(_pil(i, i + 1)),
                                return_logprob=True, logprob_start_len=0)
                for i, text in enumerate(PROMPTS)]
    for i, (text, out) in enumerate(zip(PROMPTS, outs)):
        ours = [entry[0] for entry in out["meta_info"]["input_token_logprobs"][1:]]
        ref = _hf_token_logprobs(path, text, _pil(i, i + 1))
        assert len(ours) == len(ref)
        err = max(abs(a - b) for a, b in zip(ours, ref))
        assert err < 1e-4, f"{arch}, {i + 1} image(s): max |ours - transformers| = {err:.2e}"


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_greedy_same_batched_alone_and_chunked(checkpoints, arch):
    path = checkpoints[arch]
    image_data = [_as_sent(_pil(i, i + 1)) for i in range(len(PROMPTS))]
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        alone = [engine.generate(t, GREEDY, image_data=imgs)["output_ids"] for t, imgs in zip(PROMPTS, image_data)]
        engine.flush_cache()
        batched = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY, image_data=image_data)]
    # Prefill chunks of 16 tokens: every image (16 to 88 rows) is cut at least once.
    with sglang.Engine(model_path=path, device="cpu", dtype="float32", chunked_prefill_size=16) as engine:
        chunked = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY, image_data=image_data)]
    assert batched == alone
    assert chunked == alone
    assert all(len(ids) == GREEDY["max_new_tokens"] for ids in alone)
