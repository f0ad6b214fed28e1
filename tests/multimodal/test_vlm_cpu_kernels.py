"""Vision-language models decode through the CPU kernels too: M-RoPE's decode positions are 1D,
where it is plain RoPE, so the C++ decode steps apply to Qwen2-VL's language model, and greedy
tokens with kernels equal the torch path's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sglang
from sglang.kernels.cpu.build import load_cpu_extension
from sglang.runtime.layers.mrope import MRotaryEmbedding
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_vlm_dir

pytestmark = pytest.mark.skipif(load_cpu_extension() is None, reason="the CPU kernel extension did not build")


def test_qwen2_vl_language_model_takes_the_decode_steps() -> None:
    runner = ModelRunner(ServerArgs(model_path=tiny_vlm_dir("qwen2_vl"), device="cpu"))
    text_model = runner.model.language_model.model
    assert isinstance(text_model.layers[0].self_attn.rotary_emb, MRotaryEmbedding)
    assert text_model.cpu_decode_steps is not None


def test_qwen2_vl_greedy_with_kernels_equals_torch() -> None:
    path = tiny_vlm_dir("qwen2_vl")
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (56, 84, 3), dtype=np.uint8))
    params = {"temperature": 0, "max_new_tokens": 12}
    outs = []
    for disable in (False, True):
        engine = sglang.Engine(model_path=path, device="cpu", disable_cpu_kernels=disable, log_level="warning")
        try:
            mark = engine.get_model_info()["image_token"]
            outs.append(engine.generate(f"{mark}Tell me.", params, image_data=img)["output_ids"])
        finally:
            engine.shutdown()
    assert outs[0] == outs[1]
