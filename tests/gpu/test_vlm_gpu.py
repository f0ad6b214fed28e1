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
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from sglang.testing.fixtures import tiny_vlm_dir

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ARCHES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3")
ENCODER_RTOL = 3e-2
LOGPROB_ATOL = 2e-3
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
        ref_text = cpu.generate(prompt, GREEDY, image_data=images)["text"]
    finally:
        cpu.shutdown()
    gpu = sgl.Engine(model_path=path, device="cuda", dtype="float32", log_level="warning")
    try:
        got = _prompt_logprobs(gpu, prompt, images)
        assert np.max(np.abs(np.array(got) - np.array(ref))) < LOGPROB_ATOL
        first = gpu.generate(prompt, GREEDY, image_data=images)
        again = gpu.generate(prompt, GREEDY, image_data=images)
        assert first["text"] == again["text"] == ref_text  # decode through CUDA graphs
        assert again["meta_info"]["cached_tokens"] >= again["meta_info"]["prompt_tokens"] - 1
        batch = gpu.generate([prompt] * 4, GREEDY, image_data=[images, images[::-1], images, images[:1] * 2])
        alone = [gpu.generate(prompt, GREEDY, image_data=im)["text"]
                 for im in (images, images[::-1], images, images[:1] * 2)]
        assert [b["text"] for b in batch] == alone
    finally:
        gpu.shutdown()
