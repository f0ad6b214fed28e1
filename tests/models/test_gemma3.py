"""Gemma 3 vs transformers on tiny random checkpoints (float32, CPU).

Text model: the shared fidelity checks (prefill over a cached prefix, batched and mixed decode,
partial logprob rows) with prompts longer than the sliding window. Vision-language model: prompt
log-probs with 1, 2 and 3 images (16 tokens each, longer than the window of 8) against
transformers given the processor's token_type_ids, i.e. with each image's tokens attending to
each other both ways; the same in one batch with text, split across extend passes at image
boundaries, and through a decode step.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.multimodal.inputs import MultimodalInputs
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.fixtures import tiny_vlm_dir
from tests.models.harness import KVHarness, hf_reference_model, logprobs
from tests.models.test_model_fidelity import (  # noqa: F401  (collected here with this module's `pair`)
    test_mixed_batch_matches_hf,
    test_partial_logprob_rows_and_no_full_logits_by_default,
    test_prefill_with_cached_prefix_and_batched_decode,
)

TOL = 1e-4


@pytest.fixture(scope="module")
def text_path() -> str:
    return tiny_vlm_dir("gemma3_text")


@pytest.fixture(scope="module")
def vlm_path() -> str:
    return tiny_vlm_dir("gemma3")


@pytest.fixture(scope="module")
def pair(text_path):
    """(our model, transformers' model, ModelConfig) for the shared fidelity tests."""
    mc = ModelConfig(text_path)
    return load_model(mc), hf_reference_model(text_path), mc


@pytest.fixture(scope="module")
def vlm(vlm_path):
    from transformers import Gemma3ForConditionalGeneration

    mc = ModelConfig(vlm_path)
    hf = Gemma3ForConditionalGeneration.from_pretrained(vlm_path, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
    return load_model(mc), hf, mc, load_multimodal_processor(vlm_path, mc.architecture)


def images(n: int, seed: int = 0) -> List[Image.Image]:
    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 256, (40 + 9 * i, 70 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def prompt(n_images: int) -> str:
    marks = " and ".join("<start_of_image>" for _ in range(n_images))
    return f"<start_of_turn>user\nCompare {marks} for me, in detail.<end_of_turn>\n<start_of_turn>model\n"


@torch.inference_mode()
def hf_logprobs(hf, hf_inputs, bidirectional: bool = True) -> torch.Tensor:
    inputs = dict(hf_inputs)
    if not bidirectional:
        inputs.pop("token_type_ids")
    return torch.log_softmax(hf(**inputs).logits[0].float(), dim=-1)


def run_extend(h: KVHarness, rows, chunks, mm_inputs, return_logprob: bool = True):
    """One extend pass with images, as ScheduleBatch builds it (mm_inputs per request)."""
    fb = h.extend_batch(rows, chunks, return_logprob)
    fb.mm_inputs = list(mm_inputs) if any(m is not None for m in mm_inputs) else None
    h.backend.init_forward_metadata(fb)
    with torch.inference_mode():
        out = h.model.forward(fb.input_ids, fb.positions, fb)
    h.commit(rows, chunks)
    return out


def processed(vlm, n_images: int, seed: int = 0):
    model, hf, mc, proc = vlm
    text, imgs = prompt(n_images), images(n_images, seed)
    pp = proc.process(text, imgs)
    hf_inputs = proc.hf_processor(text=[text], images=imgs, return_tensors="pt")
    assert hf_inputs["input_ids"][0].tolist() == pp.input_ids
    return pp, hf_inputs


# ---------------------------------------------------------------- vision-language model


@pytest.mark.parametrize("n_images", [1, 2, 3])
def test_prompt_logprobs_with_images_match_hf(vlm, n_images: int) -> None:
    model, hf, mc, _ = vlm
    pp, hf_inputs = processed(vlm, n_images)
    assert [it.length for it in pp.mm_inputs.items] == [16] * n_images and pp.mm_inputs.bidirectional
    h = KVHarness.for_config(model, mc)
    out = run_extend(h, [h.new_request()], [pp.input_ids], [pp.mm_inputs])
    ours, ref = logprobs(out.input_logits), hf_logprobs(hf, hf_inputs)
    assert (ours - ref).abs().max().item() < TOL
    # The bidirectional blocks matter: causal attention over the images gives other numbers.
    assert (ours - hf_logprobs(hf, hf_inputs, bidirectional=False)).abs().max().item() > 1e-2


def test_batch_with_text_and_passes_cut_at_image_boundaries_match_hf(vlm) -> None:
    """Requests with 1, 2 and 3 images and a text-only one in one batch; two of them continue
    on a cached prefix that ends exactly at an image start or end."""
    model, hf, mc, proc = vlm
    reqs = [processed(vlm, n, seed=n) for n in (1, 2, 3)]
    text_ids = proc.hf_processor.tokenizer("Just some words of text, longer than the window.")["input_ids"]
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in range(4)]
    cut2 = reqs[1][0].mm_inputs.items[1].offset  # request 2's second image starts the next pass
    cut3 = reqs[2][0].mm_inputs.items[0].end  # request 3's first image is all in the first pass
    first = run_extend(h, [rows[1], rows[2]], [reqs[1][0].input_ids[:cut2], reqs[2][0].input_ids[:cut3]],
                       [reqs[1][0].mm_inputs, reqs[2][0].mm_inputs])
    chunks = [reqs[0][0].input_ids, reqs[1][0].input_ids[cut2:], reqs[2][0].input_ids[cut3:], text_ids]
    second = run_extend(h, rows, chunks, [r[0].mm_inputs for r in reqs] + [None])
    parts = list(torch.split(second.input_logits, [len(c) for c in chunks]))
    first_parts = torch.split(first.input_logits, [cut2, cut3])
    parts[1], parts[2] = torch.cat([first_parts[0], parts[1]]), torch.cat([first_parts[1], parts[2]])
    refs = [hf_logprobs(hf, r[1]) for r in reqs] + [hf_logprobs(hf, {"input_ids": torch.tensor([text_ids]),
                                                                      "token_type_ids": torch.zeros(1, len(text_ids),
                                                                                                    dtype=torch.int64)})]
    for i, (part, ref) in enumerate(zip(parts, refs)):
        assert (logprobs(part) - ref).abs().max().item() < TOL, f"request {i}"


@torch.inference_mode()
def test_decode_after_images_matches_hf(vlm) -> None:
    model, hf, mc, _ = vlm
    pp, hf_inputs = processed(vlm, 2, seed=5)
    h = KVHarness.for_config(model, mc)
    row = h.new_request()
    run_extend(h, [row], [pp.input_ids], [pp.mm_inputs], return_logprob=False)
    out = hf(**hf_inputs, use_cache=True)
    past, n = out.cache, len(pp.input_ids)
    for token in (17, 401, 9):
        ours = logprobs(h.decode([row], [token]).next_token_logits[0])
        n += 1
        out = hf(input_ids=torch.tensor([[token]]), cache=past, use_cache=True,
                 attention_mask=torch.ones(1, n, dtype=torch.int64))
        past = out.cache
        assert (ours - torch.log_softmax(out.logits[0, -1].float(), dim=-1)).abs().max().item() < TOL


def test_an_extend_pass_inside_an_image_is_refused(vlm) -> None:
    model, _, mc, _ = vlm
    pp, _ = processed(vlm, 1)
    cut = pp.mm_inputs.items[0].offset + 5
    h = KVHarness.for_config(model, mc)
    with pytest.raises(RuntimeError, match="in one pass"):
        run_extend(h, [h.new_request()], [pp.input_ids[:cut]], [pp.mm_inputs])


def test_pan_and_scan_crops_are_images_of_their_own(vlm) -> None:
    """With pan-and-scan (a processor call option, off by default as in transformers), a wide image
    is the original plus crops, each its own 16-token block and item."""
    model, hf, mc, proc = vlm
    wide = Image.fromarray(np.random.RandomState(3).randint(0, 256, (40, 100, 3), dtype=np.uint8))
    square = Image.fromarray(np.random.RandomState(4).randint(0, 256, (50, 50, 3), dtype=np.uint8))
    text, imgs = prompt(2), [wide, square]
    hf_inputs = proc.hf_processor(text=[text], images=imgs, do_pan_and_scan=True, pan_and_scan_min_crop_size=20,
                                  return_tensors="pt")
    ids = hf_inputs["input_ids"][0].tolist()
    items = proc.split_outputs(dict(hf_inputs), ids)
    assert len(items) == 1 + 3 + 1  # the wide image, its 3 crops, the square one (no crops)
    mm = MultimodalInputs(items, bidirectional=True)
    h = KVHarness.for_config(model, mc)
    out = run_extend(h, [h.new_request()], [ids], [mm])
    assert (logprobs(out.input_logits) - hf_logprobs(hf, hf_inputs)).abs().max().item() < TOL


def test_processor_marks_and_chat_template(vlm) -> None:
    _, _, _, proc = vlm
    tok = proc.hf_processor.tokenizer
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and"},
                                             {"type": "image_url", "image_url": {"url": "x"}}]}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == ("<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>and<start_of_image><end_of_turn>\n"
                        "<start_of_turn>model\n")
    pp = proc.process(rendered, images(2))
    assert pp.input_ids.count(tok.convert_tokens_to_ids("<bos>")) == 1  # the template's BOS is not doubled
    assert len(pp.mm_inputs.items) == 2
    # A text without marks gets the images in front; a wrong number of marks is refused.
    bare = proc.process("Describe it.", images(1))
    assert bare.mm_inputs.items[0].offset < bare.input_ids.index(tok("Describe")["input_ids"][-1])
    with pytest.raises(ValueError, match="marks 2 image"):
        proc.process(prompt(2), images(1))


def test_original_checkpoint_layout_loads_the_same(vlm, vlm_path, tmp_path) -> None:
    """Checkpoints saved before transformers 5 name tensors "language_model.model.*",
    "vision_tower.vision_model.*" and "multi_modal_projector.*" (and may carry the tied lm_head);
    transformers 5.25 saves "model.vision_tower.*" without "vision_model."."""
    import shutil

    from safetensors.torch import load_file, save_file

    model, _, mc, _ = vlm
    old = shutil.copytree(vlm_path, tmp_path / "old_layout")
    renames = (("model.language_model.", "language_model.model."),
               ("model.vision_tower.", "vision_tower.vision_model."),
               ("model.multi_modal_projector.", "multi_modal_projector."))
    tensors = {}
    for name, t in load_file(str(old / "model.safetensors")).items():
        for new, orig in renames:
            name = orig + name[len(new):] if name.startswith(new) else name
        tensors[name] = t
    assert any(n.startswith("vision_tower.vision_model.") for n in tensors)
    tensors["language_model.lm_head.weight"] = tensors["language_model.model.embed_tokens.weight"].clone()
    save_file(tensors, str(old / "model.safetensors"), metadata={"format": "pt"})
    reloaded = load_model(ModelConfig(str(old)))
    ours = dict(model.named_parameters())
    for name, param in reloaded.named_parameters():
        assert torch.equal(param, ours[name]), name
