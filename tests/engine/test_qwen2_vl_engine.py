"""Qwen2-VL and Qwen2.5-VL through the whole Engine (float32, CPU): images as PIL images, bytes and
data URLs, video as a list of frames; prompt log-probs against transformers; greedy tokens batched
vs alone and with prefill chunks that cut through the images; radix reuse by image content."""

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
from sglang.runtime.multimodal.inputs import IMAGE, VIDEO
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.fixtures import tiny_vlm_dir

ARCHS = ["qwen2_vl", "qwen2_5_vl"]
MARK = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_MARK = "<|vision_start|><|video_pad|><|vision_end|>"
SIZES = ((84, 112), (56, 56), (140, 100))  # 12, 4 and 16 tokens


def chat(content: str) -> str:
    return f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


# (prompt, number of images, number of 4-frame videos)
CASES = [
    (chat(f"{MARK}What is this?"), 1, 0),
    (chat(f"{MARK} and {MARK}: compare them."), 2, 0),
    (chat(f"{MARK}{MARK} then {MARK}"), 3, 0),
    (chat(f"Watch {VIDEO_MARK} closely."), 0, 1),
]
GREEDY = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}


def _pil(h: int, w: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _images(case: int, count: int) -> List[Image.Image]:
    return [_pil(h, w, seed=10 * case + i) for i, (h, w) in enumerate(SIZES[:count])]


def _videos(case: int, count: int) -> List[List[Image.Image]]:
    return [[_pil(56, 84, seed=100 * case + 10 * v + f) for f in range(4)] for v in range(count)]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # lossless: the same pixels as the PIL image
    return buf.getvalue()


def _as_sent(images: List[Image.Image]) -> List[Any]:
    """The images in the three forms a request may use (PIL, bytes, data URL), in turn."""
    forms = (lambda im: im, _png, lambda im: "data:image/png;base64," + base64.b64encode(_png(im)).decode())
    return [forms[i % 3](im) for i, im in enumerate(images)]


def _media(i: int) -> Dict[str, Any]:
    _, n_images, n_videos = CASES[i]
    out: Dict[str, Any] = {}
    if n_images:
        out["image_data"] = _as_sent(_images(i, n_images))
    if n_videos:
        out["video_data"] = _videos(i, n_videos)
    return out


@torch.inference_mode()
def _hf_inputs(path: str, i: int):
    """transformers' model and its inputs for case i, on our processor's ids and pixels."""
    text, n_images, n_videos = CASES[i]
    arch = transformers.AutoConfig.from_pretrained(path).architectures[0]
    prompt = load_multimodal_processor(path, arch).process(text, _images(i, n_images), _videos(i, n_videos))
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor([prompt.input_ids])
    kw: Dict[str, Any] = {"mm_token_type_ids": (ids == model.config.image_token_id).long()
                          + 2 * (ids == model.config.video_token_id).long()}
    for modality, pixels, grid in ((IMAGE, "pixel_values", "image_grid_thw"),
                                   (VIDEO, "pixel_values_videos", "video_grid_thw")):
        items = [it for it in prompt.mm_inputs.items if it.modality == modality]
        if items:
            kw[pixels] = torch.cat([it.features[pixels] for it in items])
            kw[grid] = torch.cat([it.features[grid] for it in items])
            if modality == VIDEO and "second_per_grid_t" in items[0].features:
                kw["second_per_grid_ts"] = torch.cat([it.features["second_per_grid_t"] for it in items])
    return model, ids, kw


@torch.inference_mode()
def _hf_token_logprobs(path: str, i: int) -> List[float]:
    """transformers' log-prob of each prompt token after the first, on the processor's pixels."""
    model, ids, kw = _hf_inputs(path, i)
    lp = torch.log_softmax(model(input_ids=ids, **kw).logits[0].float(), dim=-1)
    return lp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].tolist()


@torch.inference_mode()
def _hf_greedy(path: str, i: int, steps: int):
    """transformers' greedy continuation (its own M-RoPE decode positions) and each step's top-2 gap."""
    model, ids, kw = _hf_inputs(path, i)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                         min_new_tokens=steps, do_sample=False, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=0, **kw)
    gaps = [float(top[0] - top[1]) for top in
            (torch.log_softmax(s[0].float(), -1).topk(2).values for s in out.scores)]
    return out.sequences[0, ids.shape[1]:].tolist(), gaps


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_prompt_logprobs_match_transformers(arch):
    path = tiny_vlm_dir(arch)
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        outs = [engine.generate(text, {"max_new_tokens": 1}, return_logprob=True, logprob_start_len=0, **_media(i))
                for i, (text, _, _) in enumerate(CASES)]
    for i, out in enumerate(outs):
        ours = [entry[0] for entry in out["meta_info"]["input_token_logprobs"][1:]]
        ref = _hf_token_logprobs(path, i)
        assert len(ours) == len(ref) == out["meta_info"]["prompt_tokens"] - 1
        err = max(abs(a - b) for a, b in zip(ours, ref))
        assert err < 1e-4, f"{arch}, case {i}: max |ours - transformers| = {err:.2e}"


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_greedy_same_batched_alone_and_chunked(arch):
    path = tiny_vlm_dir(arch)
    prompts = [text for text, _, _ in CASES]
    media = [_media(i) for i in range(len(CASES))]
    batch_media = {"image_data": [m.get("image_data") for m in media],
                   "video_data": [m.get("video_data") for m in media]}
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        alone = [engine.generate(t, GREEDY, **m)["output_ids"] for t, m in zip(prompts, media)]
        engine.flush_cache()
        batched = [o["output_ids"] for o in engine.generate(prompts, GREEDY, **batch_media)]
    # Prefill chunks of 8 tokens: every image and the video (4 to 16 rows) is cut at least once.
    with sglang.Engine(model_path=path, device="cpu", dtype="float32", chunked_prefill_size=8) as engine:
        chunked = [o["output_ids"] for o in engine.generate(prompts, GREEDY, **batch_media)]
    assert batched == alone
    assert chunked == alone
    assert all(len(ids) == GREEDY["max_new_tokens"] for ids in alone)
    assert len({tuple(ids) for ids in alone}) > 1, "outputs should depend on the images"


@pytest.mark.parametrize("arch", ARCHS)
def test_engine_greedy_decode_matches_transformers(arch):
    """Decode positions past images carry the M-RoPE shift: tokens equal transformers' generate
    (a divergence is allowed only where transformers' own top-2 logprobs tie)."""
    path = tiny_vlm_dir(arch)
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        ours = [engine.generate(CASES[i][0], GREEDY, **_media(i))["output_ids"] for i in (0, 1, 3)]
    for got, i in zip(ours, (0, 1, 3)):
        ref, gaps = _hf_greedy(path, i, GREEDY["max_new_tokens"])
        step = next((k for k, (a, b) in enumerate(zip(got, ref)) if a != b), None)
        assert step is None or gaps[step] < 1e-3, f"{arch}, case {i}: step {step} differs ({got} vs {ref})"


def test_radix_reuses_an_image_by_content_only():
    path = tiny_vlm_dir("qwen2_vl")
    text = chat(f"Look at {MARK} and describe it.")
    first, other = _pil(84, 112, seed=1), _pil(84, 112, seed=2)
    processor = load_multimodal_processor(path, "Qwen2VLForConditionalGeneration")
    image_offset = processor.process(text, [first]).mm_inputs.items[0].offset
    params = {"max_new_tokens": 4, "temperature": 0}
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        a = engine.generate(text, params, image_data=first)
        again = engine.generate(text, params, image_data=_png(first))  # same pixels, sent as bytes
        different = engine.generate(text, params, image_data=other)
    prompt_len = a["meta_info"]["prompt_tokens"]
    assert again["meta_info"]["cached_tokens"] >= prompt_len - 1
    assert again["output_ids"] == a["output_ids"]
    # Text before the image may be reused; no position of the image (or after it) is.
    assert different["meta_info"]["cached_tokens"] <= image_offset
