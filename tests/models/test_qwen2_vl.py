"""Qwen2-VL and Qwen2.5-VL vs transformers on tiny random checkpoints (float32, CPU).

Prompt log-probs with 1, 2 and 3 images of different sizes, a 4-frame video and an image beside a
video, all in one batched extend (with a text-only prompt), each against transformers' model on
the same pixels; chunked prefill that cuts through images; a decode step at the request's shifted
M-RoPE position; the vision encoder batching items like it encodes them alone; and the processor's
token ids and M-RoPE positions against transformers' processor and `get_rope_index`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import List, Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.qwen2_5_vl import window_order
from sglang.runtime.multimodal.inputs import IMAGE, VIDEO
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.fixtures import tiny_vlm_dir
from sglang.testing.tiny_vlm import make_tiny_vlm
from tests.models.harness import KVHarness, logprobs

TOL = 1e-4
IMAGE_SIZES = ((84, 112), (56, 56), (140, 100))  # (height, width): 12, 4 and 16 tokens
MARK = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_MARK = "<|vision_start|><|video_pad|><|vision_end|>"


def image(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def frames(n: int, seed: int, size=(56, 84)) -> List[Image.Image]:
    return [image(*size, seed=seed * 100 + i) for i in range(n)]


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def vlm(request):
    from transformers import AutoModelForImageTextToText

    path = tiny_vlm_dir(request.param)
    mc = ModelConfig(path)
    hf = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    return SimpleNamespace(arch=request.param, path=path, mc=mc, model=load_model(mc), hf=hf,
                           proc=load_multimodal_processor(path, mc.architecture))


# ---------------------------------------------------------------- running both sides


def hf_inputs(vlm, prompt) -> dict:
    ids = torch.tensor([prompt.input_ids])
    cfg = vlm.mc.hf_config
    kw = {"input_ids": ids,
          "mm_token_type_ids": (ids == cfg.image_token_id).long() + 2 * (ids == cfg.video_token_id).long()}
    images = [it for it in prompt.mm_inputs.items if it.modality == IMAGE]
    videos = [it for it in prompt.mm_inputs.items if it.modality == VIDEO]
    if images:
        kw["pixel_values"] = torch.cat([it.features["pixel_values"] for it in images])
        kw["image_grid_thw"] = torch.cat([it.features["image_grid_thw"] for it in images])
    if videos:
        kw["pixel_values_videos"] = torch.cat([it.features["pixel_values_videos"] for it in videos])
        kw["video_grid_thw"] = torch.cat([it.features["video_grid_thw"] for it in videos])
        if "second_per_grid_t" in videos[0].features:
            kw["second_per_grid_ts"] = torch.cat([it.features["second_per_grid_t"] for it in videos])
    return kw


@torch.inference_mode()
def hf_logprobs(vlm, prompt, extra: Sequence[int] = ()) -> torch.Tensor:
    kw = hf_inputs(vlm, prompt)
    ids = torch.tensor([list(prompt.input_ids) + list(extra)])
    kw["mm_token_type_ids"] = torch.cat([kw["mm_token_type_ids"], torch.zeros(1, len(extra), dtype=torch.long)], 1)
    kw["input_ids"] = ids
    return logprobs(vlm.hf(**kw).logits[0])


def text_prompt(vlm, text: str):
    return SimpleNamespace(input_ids=vlm.proc.hf_processor.tokenizer(text)["input_ids"], mm_inputs=None)


def run_extend(h: KVHarness, rows, prompts, bounds) -> torch.Tensor:
    """One extend pass: request i covers prompts[i].input_ids[a:b] for (a, b) = bounds[i], with
    images and M-RoPE positions set as ScheduleBatch sets them. Returns every row's logits."""
    chunks = [p.input_ids[a:b] for p, (a, b) in zip(prompts, bounds)]
    fb = h.extend_batch(rows, chunks, return_logprob=True)
    mms = [p.mm_inputs for p in prompts]
    if any(mm is not None for mm in mms):
        fb.mm_inputs = mms
        fb.mrope_positions = torch.cat([
            mm.rope_positions(a, b - a) if mm is not None else torch.arange(a, b).expand(3, -1)
            for mm, (a, b) in zip(mms, bounds)], dim=1)
    h.backend.init_forward_metadata(fb)
    with torch.inference_mode():
        out = h.model.forward(fb.input_ids, fb.positions, fb)
    h.commit(rows, chunks)
    return out.input_logits


def harness(vlm) -> KVHarness:
    return KVHarness.for_config(vlm.model, vlm.mc)


def check_close(ours: torch.Tensor, ref: torch.Tensor, what: str, tol: float = TOL) -> None:
    assert ours.shape == ref.shape, what
    err = (ours - ref).abs().max().item()
    assert err < tol, f"{what}: max |log-prob difference| {err:.2e} >= {tol:.0e}"


# ---------------------------------------------------------------- fidelity


def _cases(vlm):
    p = vlm.proc
    imgs = [image(h, w, seed=i) for i, (h, w) in enumerate(IMAGE_SIZES)]
    return {
        "1 image": p.process(f"Describe {MARK} briefly.", imgs[:1]),
        "2 images": p.process(f"First {MARK} then {MARK}: which is brighter?", imgs[:2]),
        "3 images": p.process(f"{MARK}{MARK} and {MARK} compared", imgs),
        "video": p.process(f"Watch {VIDEO_MARK} and tell me what happens.", videos=[frames(4, seed=7)]),
        "image and video": p.process(f"{VIDEO_MARK} then {MARK} end", imgs[2:], [frames(4, seed=8)]),
    }


def test_prompt_logprobs_match_hf_in_one_batch(vlm) -> None:
    cases = _cases(vlm)
    prompts = list(cases.values()) + [text_prompt(vlm, "Only text in this prompt, no pictures at all.")]
    names = list(cases) + ["text only"]
    h = harness(vlm)
    rows = [h.new_request() for _ in prompts]
    logits = run_extend(h, rows, prompts, [(0, len(p.input_ids)) for p in prompts])
    for name, prompt, part in zip(names, prompts, torch.split(logits, [len(p.input_ids) for p in prompts])):
        ref = hf_logprobs(vlm, prompt) if prompt.mm_inputs else logprobs(
            vlm.hf(input_ids=torch.tensor([prompt.input_ids])).logits[0])
        check_close(logprobs(part), ref, f"{vlm.arch} {name}")


def test_chunked_prefill_cutting_through_images(vlm) -> None:
    prompt = _cases(vlm)["2 images"]
    first, second = prompt.mm_inputs.items
    cuts = [first.offset + 5, second.offset + 2]  # inside each image's placeholder run
    h = harness(vlm)
    whole = run_extend(h, [h.new_request()], [prompt], [(0, len(prompt.input_ids))])
    vlm.model.encoder_cache.clear()
    misses = vlm.model.encoder_cache.misses
    h = harness(vlm)
    row = h.new_request()
    bounds = list(zip([0] + cuts, cuts + [len(prompt.input_ids)]))
    parts = [run_extend(h, [row], [prompt], [b]) for b in bounds]
    assert vlm.model.encoder_cache.misses - misses == 2, "each image is encoded once across the chunks"
    chunked = logprobs(torch.cat(parts))
    check_close(chunked, logprobs(whole), f"{vlm.arch} chunked vs one pass", tol=2e-5)
    check_close(chunked, hf_logprobs(vlm, prompt), f"{vlm.arch} chunked vs transformers")


def test_decode_step_at_shifted_position_matches_hf(vlm) -> None:
    prompt = _cases(vlm)["3 images"]
    assert prompt.mm_inputs.mrope_delta < 0
    h = harness(vlm)
    row = h.new_request()
    last = run_extend(h, [row], [prompt], [(0, len(prompt.input_ids))])[-1]
    token = int(last.argmax())
    fb = h.decode_batch([row], [token])
    fb.positions = fb.positions + prompt.mm_inputs.mrope_delta  # what ScheduleBatch's decode does
    h.backend.init_forward_metadata(fb)
    with torch.inference_mode():
        out = vlm.model.forward(fb.input_ids, fb.positions, fb)
    h.commit([row], [[token]])
    ref = hf_logprobs(vlm, prompt, [token])[-1]
    check_close(logprobs(out.next_token_logits[0]), ref, f"{vlm.arch} decode after images")


def test_encoder_batches_items_like_each_alone(vlm) -> None:
    cases = _cases(vlm)
    items = cases["3 images"].mm_inputs.items + cases["video"].mm_inputs.items
    items.append(vlm.proc.process(MARK, [image(84, 112, seed=99)]).mm_inputs.items[0])  # same size as #0
    with torch.inference_mode():
        together = vlm.model.encode_multimodal(items)
        alone = [vlm.model.encode_multimodal([it])[0] for it in items]
    for it, a, b in zip(items, together, alone):
        assert a.shape == (it.length, vlm.mc.hidden_size)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- processor


def _hf_processor(vlm):
    """transformers' processor for this checkpoint, built around the same tokenizer and image
    processor (its constructor insists on a video processor, which needs torchvision)."""
    import transformers

    cls = getattr(transformers, "Qwen2VLProcessor" if vlm.arch == "qwen2_vl" else "Qwen2_5_VLProcessor")
    p = cls.__new__(cls)
    tok = vlm.proc.hf_processor.tokenizer
    p.tokenizer, p.image_processor, p.video_processor, p.chat_template = tok, vlm.proc.image_processor, None, None
    p.image_token, p.video_token = "<|image_pad|>", "<|video_pad|>"
    p.image_token_id, p.video_token_id = tok.convert_tokens_to_ids(p.image_token), tok.convert_tokens_to_ids(p.video_token)
    return p


@pytest.mark.parametrize("n_images", [1, 2, 3])
def test_processor_ids_and_positions_match_hf(vlm, n_images: int) -> None:
    imgs = [image(h, w, seed=10 + i) for i, (h, w) in enumerate(IMAGE_SIZES[:n_images])]
    text = "Look: " + " and ".join([MARK] * n_images) + ". What do you see?"
    ours = vlm.proc.process(text, imgs)
    ref = _hf_processor(vlm)(text=[text], images=imgs, return_tensors="pt")
    assert ours.input_ids == ref["input_ids"][0].tolist()
    torch.testing.assert_close(torch.cat([it.features["pixel_values"] for it in ours.mm_inputs.items]),
                               ref["pixel_values"], rtol=0, atol=0)
    positions, delta = vlm.hf.model.get_rope_index(ref["input_ids"], ref["mm_token_type_ids"], ref["image_grid_thw"])
    assert torch.equal(ours.mm_inputs.mrope_positions, positions[:, 0])
    assert ours.mm_inputs.mrope_delta == int(delta)


def test_video_positions_match_get_rope_index(vlm) -> None:
    prompt = _cases(vlm)["image and video"]
    kw = hf_inputs(vlm, prompt)
    extra = {"second_per_grid_ts": kw["second_per_grid_ts"]} if "second_per_grid_ts" in kw else {}
    positions, delta = vlm.hf.model.get_rope_index(kw["input_ids"], kw["mm_token_type_ids"], kw["image_grid_thw"],
                                                   kw["video_grid_thw"], **extra)
    assert torch.equal(prompt.mm_inputs.mrope_positions, positions[:, 0])
    assert prompt.mm_inputs.mrope_delta == int(delta)
    video = [it for it in prompt.mm_inputs.items if it.modality == VIDEO][0]
    assert video.features["video_grid_thw"].tolist() == [[2, 4, 6]] and video.length == 12


def test_video_rows_pair_consecutive_frames(vlm) -> None:
    """A patch row of a video holds frames 2g and 2g+1 along its time axis; an odd last frame is
    repeated; identical frames give the image rows of that frame."""
    proc, tp, area = vlm.proc, 2, 14 * 14
    clip = frames(3, seed=3)
    rows = proc.process(VIDEO_MARK, videos=[clip]).mm_inputs.items[0].features["pixel_values_videos"]
    single = [proc.image_processor(images=[f], return_tensors="pt")["pixel_values"] for f in clip]
    patches = single[0].shape[0]
    assert rows.shape == (2 * patches, single[0].shape[1])
    per_frame = [s.view(patches, 3, tp, area)[:, :, 0] for s in single]  # [patches, C, area]
    expect = [torch.stack(pair, dim=2).reshape(patches, -1)
              for pair in ((per_frame[0], per_frame[1]), (per_frame[2], per_frame[2]))]
    torch.testing.assert_close(rows, torch.cat(expect), rtol=0, atol=0)
    still = proc.process(VIDEO_MARK, videos=[[clip[0]] * 2]).mm_inputs.items[0].features["pixel_values_videos"]
    torch.testing.assert_close(still, single[0], rtol=0, atol=0)


def test_processor_rejects_bad_media(vlm) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        vlm.proc.process(VIDEO_MARK, videos=[[]])
    with pytest.raises(ValueError, match="one size"):
        vlm.proc.process(VIDEO_MARK, videos=[[image(56, 56, 0), image(84, 56, 1)]])
    with pytest.raises(ValueError, match="marks 2 image"):
        vlm.proc.process(MARK + MARK, [image(56, 56, 0)])


# ---------------------------------------------------------------- vision tower pieces and loading


@pytest.mark.parametrize("window", [2, 3])
def test_window_order_matches_transformers(window: int) -> None:
    from transformers.vision_utils import get_vision_window_index

    grids = [(1, 8, 8), (1, 6, 8), (2, 4, 6), (1, 10, 6)]
    order, lengths = window_order(grids, 2, window)
    ref_order, ref_cu = get_vision_window_index(torch.tensor(grids), 2, window * 2 * 14, 14)
    assert torch.equal(order, ref_order)
    assert [0] + np.cumsum(lengths).tolist() == ref_cu.tolist()


def _rename_to_old_layout(src: str, dst) -> str:
    """The checkpoint with pre-transformers-5 names: model.layers.., visual.., lm_head."""
    import shutil

    shutil.copytree(src, dst)
    tensors = load_file(f"{dst}/model.safetensors")
    old = {name.replace("model.language_model.", "model.").replace("model.visual.", "visual."): t
           for name, t in tensors.items()}
    assert len(old) == len(tensors) and any(n.startswith("visual.") for n in old)
    save_file(old, f"{dst}/model.safetensors", metadata={"format": "pt"})
    return str(dst)


def test_old_checkpoint_layout_loads_the_same_weights(vlm, tmp_path) -> None:
    old = load_model(ModelConfig(_rename_to_old_layout(vlm.path, tmp_path / "old")))
    ours = dict(vlm.model.named_parameters())
    for name, param in old.named_parameters():
        assert torch.equal(param, ours[name]), name


def test_tied_embeddings(tmp_path) -> None:
    from transformers import AutoModelForImageTextToText

    path = make_tiny_vlm("qwen2_vl", str(tmp_path / "tied"), tie_word_embeddings=True)
    mc = ModelConfig(path)
    model = load_model(mc)
    lm = model.language_model
    assert lm.lm_head is lm.model.embed_tokens
    hf = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.randint(0, 990, (30,), generator=torch.Generator().manual_seed(0)).tolist()
    h = KVHarness.for_config(model, mc)
    ours = logprobs(h.extend([h.new_request()], [ids], return_logprob=True).input_logits)
    with torch.inference_mode():
        ref = logprobs(hf(input_ids=torch.tensor([ids])).logits[0])
    check_close(ours, ref, "tied qwen2_vl, text only")


def test_registry_loads_the_family_processor_without_torchvision(vlm) -> None:
    from sglang.runtime.multimodal.families.qwen2_vl import Qwen2VLProcessor

    assert isinstance(vlm.proc, Qwen2VLProcessor) and vlm.proc.supports_video
    assert type(vlm.proc).__name__ == ("Qwen2VLProcessor" if vlm.arch == "qwen2_vl" else "Qwen2_5_VLProcessor")
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "hi"}]}]
    rendered = vlm.proc.hf_processor.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                        f"{MARK}{VIDEO_MARK}hi<|im_end|>\n<|im_start|>assistant\n")
