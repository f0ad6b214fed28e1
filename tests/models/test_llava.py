"""LLaVA and LLaVA-NeXT against transformers on tiny random checkpoints (float32, CPU).

Prompts carry 1, 2 and 3 images of different sizes and aspect ratios (for LLaVA-NeXT: 2x2, 3x1 and
1x3 tile grids, each with its own unpadded crop). Our side runs the family processor and extend
passes over real KV pools with `mm_inputs` set as ScheduleBatch sets them.
"""

from __future__ import annotations

import os
import shutil
from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.multimodal.families.llava import cut_runs
from sglang.runtime.multimodal.inputs import MultimodalInputs, MultimodalItem
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.tiny_vlm import make_tiny_vlm
from tests.models.harness import KVHarness, logprobs

TOL = 1e-4  # at log-probs of magnitude <= 10; scaled up with them (see bound())


def bound(tol: float, reference: torch.Tensor) -> float:
    """float32 summation-order error grows with the values' magnitude; the tiny checkpoint's random
    weights (drawn by transformers' initializers, which change between releases) set that."""
    return tol * max(1.0, reference.abs().max().item() / 10)
SIGLIP = {"model_type": "siglip_vision_model", "hidden_act": "gelu_pytorch_tanh"}
VARIANTS = {
    "llava": ("llava", {}),
    "llava-qwen2-tied": ("llava", {"text_arch": "qwen2"}),
    "llava-mistral-full-2layers": ("llava", {"text_arch": "mistral", "vision_feature_select_strategy": "full",
                                             "vision_feature_layer": [-3, -1]}),
    "llava-siglip": ("llava", {"vision_config": SIGLIP, "vision_feature_select_strategy": "full",
                               "vision_feature_layer": [-3, -1]}),
    "llava_next": ("llava_next", {}),
    "llava_next-qwen2": ("llava_next", {"text_arch": "qwen2"}),
    "llava_next-siglip": ("llava_next", {"vision_config": SIGLIP, "vision_feature_select_strategy": "full"}),
}
# (height, width): wide, tall, wide-short -> LLaVA-NeXT grids 2x2, 3x1, 1x3.
IMAGE_SIZES = ((40, 60), (90, 30), (30, 70))
PROMPTS = {
    1: "USER: <image>\nWhat is shown here? ASSISTANT:",
    2: "USER: Compare <image> with<image>\nplease. ASSISTANT:",
    3: "USER: <image><image> and then <image> ASSISTANT:",  # two images in one placeholder run
}


def images(count: int, seed: int = 0) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in IMAGE_SIZES[:count]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    built: Dict[str, str] = {}

    def get(variant: str) -> str:
        if variant not in built:
            arch, overrides = VARIANTS[variant]
            built[variant] = make_tiny_vlm(arch, str(tmp_path_factory.mktemp(variant)), **overrides)
        return built[variant]

    return get


class Pair:
    """Our model + processor and transformers' model + processor for one checkpoint."""

    def __init__(self, path: str):
        self.path = path
        self.config = ModelConfig(path)
        self.model = load_model(self.config)
        self.processor = load_multimodal_processor(path, self.config.architecture)
        cls = getattr(transformers, self.config.architecture)
        self.hf = cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()

    def harness(self) -> KVHarness:
        return KVHarness.for_config(self.model, self.config)

    @torch.inference_mode()
    def hf_logprobs(self, text: str, imgs: Sequence[Image.Image]) -> torch.Tensor:
        inputs = self.processor.hf_processor(text=[text], images=list(imgs), return_tensors="pt")
        return torch.log_softmax(self.hf(**inputs).logits[0].float(), dim=-1)


@pytest.fixture(scope="module")
def pairs(checkpoint):
    made: Dict[str, Pair] = {}

    def get(variant: str) -> Pair:
        if variant not in made:
            made[variant] = Pair(checkpoint(variant))
        return made[variant]

    return get


def extend(h: KVHarness, model, rows: List[int], chunks: List[List[int]], mm: List[MultimodalInputs]):
    """One extend pass with the requests' multimodal inputs, as ScheduleBatch hands them over."""
    fb = h.extend_batch(rows, chunks, return_logprob=True)
    fb.mm_inputs = mm
    h.backend.init_forward_metadata(fb)
    with torch.inference_mode():
        out = model.forward(fb.input_ids, fb.positions, fb)
    h.commit(rows, chunks)
    return out


# ---------------------------------------------------------------- processor


@pytest.mark.parametrize("variant", ["llava", "llava_next", "llava-siglip", "llava_next-siglip"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_processor_matches_hf_ids_and_cuts_items(pairs, variant, count):
    pair = pairs(variant)
    imgs = images(count)
    ours = pair.processor.process(PROMPTS[count], imgs)
    hf_ids = pair.processor.hf_processor(text=[PROMPTS[count]], images=imgs, return_tensors="pt")["input_ids"]
    assert ours.input_ids == hf_ids[0].tolist()
    items = ours.mm_inputs.items
    assert len(items) == count
    image_id = pair.processor.image_token_id
    covered = [i for it in items for i in range(it.offset, it.end)]
    assert covered == [i for i, t in enumerate(ours.input_ids) if t == image_id]
    if variant.startswith("llava_next"):  # own tiles only: the padding tiles of smaller grids are gone
        assert [it.features["pixel_values"].shape[0] for it in items] == [5, 4, 4][:count]
        assert [tuple(it.features["image_sizes"].tolist()) for it in items] == list(IMAGE_SIZES[:count])


def test_processor_places_unmarked_images_first_one_per_line(pairs):
    pair = pairs("llava")
    ours = pair.processor.process("Describe.", images(2))
    marked = pair.processor.process("<image>\n<image>\nDescribe.", images(2))
    assert ours.input_ids == marked.input_ids
    assert [it.offset for it in ours.mm_inputs.items] == [it.offset for it in marked.mm_inputs.items]


def test_processor_rejects_marks_that_do_not_match_images(pairs):
    pair = pairs("llava_next")
    with pytest.raises(ValueError, match="marks 2 image"):
        pair.processor.process("<image> and <image>", images(3))


def test_cut_runs_splits_adjacent_images_and_rejects_partial_ones():
    assert cut_runs([(3, 10), (20, 4)], [4, 6, 4]) == [(3, 4), (7, 6), (20, 4)]
    with pytest.raises(ValueError, match="do not fit"):
        cut_runs([(3, 10)], [4, 4])
    with pytest.raises(ValueError, match="do not fit"):
        cut_runs([(0, 4), (9, 4)], [5, 3])


# ---------------------------------------------------------------- model vs transformers


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_prompt_logprobs_match_transformers(pairs, variant):
    """Requests with 1, 2 and 3 images in one batched extend; each equals transformers alone."""
    pair = pairs(variant)
    processed = {n: pair.processor.process(PROMPTS[n], images(n, seed=n)) for n in (1, 2, 3)}
    h = pair.harness()
    rows = [h.new_request() for _ in processed]
    out = extend(h, pair.model, rows, [p.input_ids for p in processed.values()],
                 [p.mm_inputs for p in processed.values()])
    parts = torch.split(out.input_logits, [len(p.input_ids) for p in processed.values()])
    for (n, prompt), logits in zip(processed.items(), parts):
        ref = pair.hf_logprobs(PROMPTS[n], images(n, seed=n))
        assert logits.shape[0] == ref.shape[0]
        err = (logprobs(logits) - ref).abs().max().item()
        assert err < bound(TOL, ref), f"{variant}, {n} image(s): max |ours - transformers| = {err:.2e}"


@pytest.mark.parametrize("variant", ["llava", "llava_next"])
def test_chunked_prefill_through_images_equals_one_pass(pairs, variant):
    pair = pairs(variant)
    prompt = pair.processor.process(PROMPTS[3], images(3))
    ids, items = prompt.input_ids, prompt.mm_inputs.items
    # Cut inside the first image, between the two adjacent ones, and twice inside the third.
    cuts = sorted({items[0].offset + 5, items[1].offset, items[2].offset + 3, items[2].offset + 11})
    assert all(any(it.offset < c < it.end for it in items) or c == items[1].offset for c in cuts)

    pair.model.encoder_cache.clear()
    h = pair.harness()
    whole = extend(h, pair.model, [h.new_request()], [ids], [prompt.mm_inputs]).input_logits

    pair.model.encoder_cache.clear()
    misses = pair.model.encoder_cache.misses
    row = h.new_request()
    pieces = []
    for lo, hi in zip([0] + cuts, cuts + [len(ids)]):
        pieces.append(extend(h, pair.model, [row], [ids[lo:hi]], [prompt.mm_inputs]).input_logits)
    assert pair.model.encoder_cache.misses - misses == len(items)  # each image encoded once
    err = (logprobs(torch.cat(pieces)) - logprobs(whole)).abs().max().item()
    assert err < bound(1e-5, logprobs(whole)), f"chunked prefill differs from one pass by {err:.2e}"


@pytest.mark.parametrize("variant", ["llava", "llava_next", "llava_next-siglip"])
def test_encoder_batches_items_of_different_sizes(pairs, variant):
    pair = pairs(variant)
    items = pair.processor.process(PROMPTS[3], images(3)).mm_inputs.items
    with torch.inference_mode():
        together = pair.model.encode_multimodal(items)
        alone = [pair.model.encode_multimodal([it])[0] for it in items]
    if variant.startswith("llava_next"):  # three grids: three row counts
        assert len({t.shape[0] for t in together}) == 3
    for it, a, b in zip(items, together, alone):
        assert a.shape == (it.length, pair.config.hidden_size)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- loading and configuration


def _old_layout_name(name: str) -> str:
    for new, old in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector."), ("model.image_newline", "image_newline")):
        if name.startswith(new):
            return old + name[len(new):]
    raise AssertionError(f"unexpected checkpoint tensor {name}")


@pytest.mark.parametrize("variant", ["llava", "llava_next"])
def test_original_checkpoint_layout_loads_the_same_weights(checkpoint, tmp_path, variant):
    path = checkpoint(variant)
    old = shutil.copytree(path, tmp_path / "old")
    tensors = load_file(os.path.join(path, "model.safetensors"))
    os.remove(old / "model.safetensors")
    save_file({_old_layout_name(k): v for k, v in tensors.items()}, str(old / "model.safetensors"),
              metadata={"format": "pt"})
    new_model, old_model = load_model(ModelConfig(path)), load_model(ModelConfig(str(old)))
    new_state, old_state = new_model.state_dict(), old_model.state_dict()
    assert new_state.keys() == old_state.keys()
    assert all(torch.equal(new_state[k], old_state[k]) for k in new_state)


def test_vision_layers_past_the_feature_layer_are_not_built(pairs):
    pair = pairs("llava")  # 2 layers, feature layer -2: only layer 0 matters
    assert len(pair.model.vision_tower.encoder.layers) == 1
    assert len(pairs("llava-siglip").model.vision_tower.encoder.layers) == 2  # [-3, -1] needs both


def test_unsupported_configurations_are_clear_errors(checkpoint):
    from sglang.runtime.models.llava import LlavaForConditionalGeneration
    from sglang.runtime.models.llava_next import LlavaNextForConditionalGeneration

    def config_with(**fields):
        config = ModelConfig(checkpoint("llava_next")).hf_config
        for name, value in fields.items():  # past transformers' field validation, as a hand-edited config.json
            object.__setattr__(config, name, value)
        return config

    # A CLIP class token kept by "full" has no place on LLaVA-NeXT's tile grid.
    with pytest.raises(ValueError, match="class token"):
        LlavaNextForConditionalGeneration(config_with(vision_feature_select_strategy="full"))
    with pytest.raises(ValueError, match="vision_feature_select_strategy"):
        LlavaForConditionalGeneration(config_with(vision_feature_select_strategy="cls_only"))
    with pytest.raises(ValueError, match="vision_feature_layer"):
        LlavaForConditionalGeneration(config_with(vision_feature_layer=-5))
    text = ModelConfig(checkpoint("llava")).hf_config.text_config
    object.__setattr__(text, "model_type", "gpt2")
    object.__setattr__(text, "architectures", None)
    with pytest.raises(ValueError, match="language model 'gpt2'"):
        LlavaForConditionalGeneration(config_with(text_config=text))


def test_next_item_with_wrong_tile_count_is_rejected(pairs):
    pair = pairs("llava_next")
    item = pair.processor.process(PROMPTS[1], images(1)).mm_inputs.items[0]
    short = MultimodalItem(item.modality, item.content_hash + 1,
                           {**item.features, "pixel_values": item.features["pixel_values"][:3]},
                           item.offset, item.length)
    with pytest.raises(ValueError, match="grid tiles"):
        pair.model.encode_multimodal([short])


def test_chat_template_renders_image_parts_the_llava_way(pairs):
    tok = pairs("llava").processor.hf_processor.tokenizer
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image"}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And now?"},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "Be brief.\nUSER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: And now? ASSISTANT:"
