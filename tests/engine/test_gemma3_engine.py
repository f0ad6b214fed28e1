"""Gemma 3 through the whole Engine (float32, CPU): prompt log-probs with 1, 2 and 3 images against
transformers (images sent as PIL images, PNG bytes and data URLs); a prefill chunk size smaller
than an image (8 vs 16 tokens), which the scheduler must never cut inside an image, gives the same
log-probs and greedy tokens; greedy tokens batched == alone; a cached prompt asked for log-probs
from inside an image recomputes that image whole."""

from __future__ import annotations

import base64
import io
from typing import Any, List

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import sglang
from sglang.testing.fixtures import tiny_vlm_dir

SIZES = ((40, 60), (90, 30), (56, 56))
PROMPTS = [
    "<start_of_turn>user\nWhat is in <start_of_image>?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\n<start_of_image><start_of_image>Compare them.<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nOne <start_of_image> two <start_of_image> three <start_of_image> done."
    "<end_of_turn>\n<start_of_turn>model\n",
]
GREEDY = {"max_new_tokens": 10, "temperature": 0, "ignore_eos": True}
TOL = 1e-4


def _pil(seed: int, count: int) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in SIZES[:count]]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # lossless: the same pixels as the PIL image
    return buf.getvalue()


def _as_sent(images: List[Image.Image]) -> List[Any]:
    """The images in the three forms a request may use (PIL, bytes, data URL), in turn."""
    forms = (lambda im: im, _png, lambda im: "data:image/png;base64," + base64.b64encode(_png(im)).decode())
    return [forms[i % 3](im) for i, im in enumerate(images)]


def _input_logprobs(out) -> List[float]:
    return [entry[0] for entry in out["meta_info"]["input_token_logprobs"]]


@pytest.fixture(scope="module")
def path() -> str:
    return tiny_vlm_dir("gemma3")


@pytest.fixture(scope="module")
def reference(path):
    """transformers' log-prob of every prompt token after the first, per prompt."""
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = transformers.Gemma3ForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    refs = []
    for i, text in enumerate(PROMPTS):
        inputs = processor(text=[text], images=_pil(i, i + 1), return_tensors="pt")
        ids = inputs["input_ids"][0]
        with torch.inference_mode():
            lp = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
        refs.append(lp[torch.arange(len(ids) - 1), ids[1:]].tolist())
    return refs


def _max_err(ours: List[float], ref: List[float]) -> float:
    assert len(ours) == len(ref)
    return max(abs(a - b) for a, b in zip(ours, ref))


def test_prompt_logprobs_match_transformers_unchunked_and_chunked(path, reference):
    image_data = [_as_sent(_pil(i, i + 1)) for i in range(len(PROMPTS))]
    for chunk in (None, 8):
        kwargs = {"chunked_prefill_size": chunk} if chunk else {}
        with sglang.Engine(model_path=path, device="cpu", dtype="float32", **kwargs) as engine:
            outs = [engine.generate(text, {"max_new_tokens": 1}, image_data=imgs, return_logprob=True,
                                    logprob_start_len=0) for text, imgs in zip(PROMPTS, image_data)]
        for i, (out, ref) in enumerate(zip(outs, reference)):
            err = _max_err(_input_logprobs(out)[1:], ref)
            assert err < TOL, f"chunk {chunk}, {i + 1} image(s): max |ours - transformers| = {err:.2e}"


def test_greedy_same_batched_alone_and_chunked(path):
    image_data = [_as_sent(_pil(i, i + 1)) for i in range(len(PROMPTS))]
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        alone = [engine.generate(t, GREEDY, image_data=imgs)["output_ids"] for t, imgs in zip(PROMPTS, image_data)]
        engine.flush_cache()
        batched = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY, image_data=image_data)]
    # Chunks of 8 (and 5: ends fall at every offset of the 16-token images) next to the others.
    for chunk in (8, 5):
        with sglang.Engine(model_path=path, device="cpu", dtype="float32", chunked_prefill_size=chunk) as engine:
            chunked = [o["output_ids"] for o in engine.generate(PROMPTS, GREEDY, image_data=image_data)]
        assert chunked == alone, f"chunked_prefill_size={chunk}"
    assert batched == alone
    assert all(len(ids) == GREEDY["max_new_tokens"] for ids in alone)


def test_cached_prompt_with_logprobs_from_inside_an_image(path, reference):
    """The second request may reuse the cache only up to the image its log-probs start in."""
    text, images = PROMPTS[0], _as_sent(_pil(0, 1))
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        first = engine.generate(text, {"max_new_tokens": 1}, image_data=images)
        ids_len = first["meta_info"]["prompt_tokens"]
        item = engine.tokenizer_manager.mm_processor.process(text, _pil(0, 1)).mm_inputs.items[0]
        image_start, logprob_start = item.offset, item.offset + 7  # inside the 16-token image
        again = engine.generate(text, {"max_new_tokens": 1}, image_data=images, return_logprob=True,
                                logprob_start_len=logprob_start)
    assert again["meta_info"]["cached_tokens"] == image_start
    ours = _input_logprobs(again)
    assert len(ours) == ids_len - logprob_start
    assert _max_err(ours, reference[0][logprob_start - 1:]) < TOL
