"""Vision-language models on the GPU: the vision encoder in bf16 against float32, the whole
Engine path on CUDA (Triton attention, CUDA graphs for decode) against the CPU, and the radix
cache over images.

Tolerances. The encoder in bf16 rounds every op to 8 bits of mantissa: its outputs must stay
within ENCODER_RTOL (relative Frobenius error) of the float32 encoder. The Engine in float32 on
CUDA runs other kernels than on the CPU (Triton attention, cuBLAS GEMMs, TF32 off), so its prompt
log-probs must equal the CPU Engine's within LOGPROB_ATOL.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from sglang.testing.fixtures import tiny_vlm_dir

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ARCHES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3")
ENCODER_RTOL = 3e-2
LOGPROB_ATOL = 2e-3
# Greedy runs on two devices (or two batch shapes) may part where the top-2 logprobs of the
# reference are closer than the devices' float32 difference: a tie, not a bug.
TIE_GAP = 1e-2
GREEDY = {"temperature": 0, "max_new_tokens": 8}


def _images(n: int, seed: int = 0) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(56, 40), (40, 56), (48, 48), (64, 32)]
    return [Image.fromarray(rng.integers(0, 256, (sizes[i % 4][1], sizes[i % 4][0], 3), dtype=np.uint8))
            for i in range(n)]


def _processor(path: str):
    from sglang.runtime.multimodal.registry import load_multimodal_processor
    from sglang.runtime.models.model_config import ModelConfig

    return load_multimodal_processor(path, ModelConfig(path).architecture)


def _model(path: str, device: str, dtype: str):
    from sglang.runtime.models.loader import load_model
    from sglang.runtime.models.model_config import ModelConfig

    config = ModelConfig(path, dtype=dtype, device=device)
    return load_model(config, device=device)


@pytest.mark.parametrize("arch", ARCHES)
def test_encoder_bf16_on_cuda_matches_float32(arch: str) -> None:
    path = tiny_vlm_dir(arch)
    proc = _processor(path)
    mark = proc.image_text
    items = proc.process(mark * 3 + "describe", _images(3)).mm_inputs.items
    ref = _model(path, "cpu", "float32").encode_multimodal(items)
    got = _model(path, "cuda", "bfloat16").encode_multimodal(items)
    for r, g in zip(ref, got):
        assert g.is_cuda and g.dtype == torch.bfloat16 and g.shape == r.shape
        err = (g.float().cpu() - r).norm() / r.norm()
        assert err < ENCODER_RTOL, f"{arch}: bf16 encoder relative error {err:.3g}"


def _greedy(engine, prompt: str, images) -> Tuple[List[int], List[float]]:
    """Greedy output ids, and the top-1 minus top-2 logprob gap at each step."""
    meta = engine.generate(prompt, GREEDY, image_data=images, return_logprob=True,
                           top_logprobs_num=2)["meta_info"]
    ids = [row[1] for row in meta["output_token_logprobs"]]
    gaps = [top[0][0] - top[1][0] for top in meta["output_top_logprobs"]]
    return ids, gaps


def _assert_same_or_tie(got: List[int], ref: Tuple[List[int], List[float]], what: str) -> None:
    ids, gaps = ref
    for step, (a, b) in enumerate(zip(got, ids)):
        if a != b:
            assert gaps[step] < TIE_GAP, f"{what}: step {step} differs with a top-2 gap of {gaps[step]:.3g}"
            return
    assert len(got) == len(ids)


def _prompt_logprobs(engine, prompt: str, images) -> List[float]:
    out = engine.generate(prompt, {"temperature": 0, "max_new_tokens": 1}, image_data=images,
                          return_logprob=True, logprob_start_len=0)
    return [row[0] for row in out["meta_info"]["input_token_logprobs"][1:]]


@pytest.mark.parametrize("arch", ARCHES)
def test_engine_on_cuda_matches_cpu_and_caches_images(arch: str) -> None:
    import sglang as sgl

    path = tiny_vlm_dir(arch)
    images = _images(2, seed=1)
    cpu = sgl.Engine(model_path=path, device="cpu", log_level="warning")
    try:
        mark = cpu.get_model_info()["image_token"]
        prompt = f"{mark}{mark}What differs?"
        ref = _prompt_logprobs(cpu, prompt, images)
        ref_greedy = _greedy(cpu, prompt, images)
    finally:
        cpu.shutdown()
    gpu = sgl.Engine(model_path=path, device="cuda", dtype="float32", log_level="warning")
    try:
        got = _prompt_logprobs(gpu, prompt, images)
        assert np.max(np.abs(np.array(got) - np.array(ref))) < LOGPROB_ATOL
        first = gpu.generate(prompt, GREEDY, image_data=images)
        again = gpu.generate(prompt, GREEDY, image_data=images)
        assert first["output_ids"] == again["output_ids"]  # the cached run decodes the same (CUDA graphs)
        _assert_same_or_tie(first["output_ids"], ref_greedy, "cuda vs cpu")
        assert again["meta_info"]["cached_tokens"] >= again["meta_info"]["prompt_tokens"] - 1
        sets = (images, images[::-1], images, images[:1] * 2)
        batch = gpu.generate([prompt] * 4, GREEDY, image_data=list(sets))
        for i, im in enumerate(sets):
            _assert_same_or_tie(batch[i]["output_ids"], _greedy(gpu, prompt, im), f"batched row {i} vs alone")
    finally:
        gpu.shutdown()
