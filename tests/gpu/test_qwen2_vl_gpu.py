"""Qwen2-VL / Qwen2.5-VL on the GPU: the vision tower in bf16 (SDPA over per-frame and window
segments), M-RoPE's [3, N] torch path next to the fused rotary+KV kernel for [N] positions, and
the Engine with CUDA-graph decode.

Tolerance as in test_gpu_fidelity: our bf16 error against transformers in float32 must stay within
a small multiple of transformers' own bf16 error (plus a floor).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from sglang.runtime.layers.attention.registry import create_attention_backend
from sglang.runtime.layers.rotary_embedding import get_rope
from sglang.runtime.mem_cache.memory_pool import KVPool
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.fixtures import tiny_vlm_dir
from tests.models.harness import KVHarness, logprobs
from tests.models.test_qwen2_vl import MARK, VIDEO_MARK, hf_inputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MAX_FACTOR, MAX_FLOOR = 3.0, 0.02
MEAN_FACTOR, MEAN_FLOOR = 2.0, 0.005
# A head_dim of 64 (mrope sections [8, 12, 12]) like the real models' kernels see, and a bigger tower.
TEXT = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0}}
VISION = {"qwen2_vl": {"embed_dim": 128, "num_heads": 2}, "qwen2_5_vl": {"hidden_size": 128, "num_heads": 2,
                                                                        "intermediate_size": 256}}


def _pil(h: int, w: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _hf(path: str, dtype: torch.dtype):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation="eager").cuda().eval()


def test_mrope_on_cuda_matches_cpu_for_both_position_shapes() -> None:
    scaling = {"rope_type": "default", "mrope_section": [8, 12, 12]}
    cpu = get_rope(64, 64, 512, 10000.0, scaling, torch.float32)
    gpu = get_rope(64, 64, 512, 10000.0, scaling, torch.float32).cuda()
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(7, h * 64, generator=gen) for h in (4, 2, 2))
    for positions in (torch.randint(0, 400, (3, 7), generator=gen), torch.randint(0, 400, (7,), generator=gen)):
        pool = KVPool(16, torch.float32, 2, 64, 1, "cuda")
        loc = torch.tensor([5, 1, 9, 3, 12, 0, 7], device="cuda")
        qg, kg = gpu.forward_and_store_kv(positions.cuda(), q.cuda().clone(), k.cuda().clone(), v.cuda(), pool, 0, loc)
        qc, kc = cpu(positions, q, k)
        torch.testing.assert_close(qg.cpu(), qc, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pool.get_key_buffer(0)[loc].reshape(7, -1).cpu(), kc, rtol=1e-5, atol=1e-5)


def _prompts(proc) -> List:
    imgs = [_pil(84, 112, 0), _pil(56, 56, 1), _pil(140, 100, 2)]
    clip = [_pil(56, 84, 10 + i) for i in range(4)]
    return [proc.process(f"Describe {MARK} now.", imgs[:1]),
            proc.process(f"{MARK} and {MARK} then {MARK}", imgs),
            proc.process(f"Watch {VIDEO_MARK} then {MARK}.", imgs[2:], [clip])]


@torch.inference_mode()
def _hf_logprobs(hf, vlm_ns, prompt) -> torch.Tensor:
    kw = {k: v.cuda() for k, v in hf_inputs(vlm_ns, prompt).items()}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in kw:
            kw[key] = kw[key].to(hf.dtype)
    return logprobs(hf(**kw).logits[0])


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_bf16_prompt_logprobs_within_transformers_bf16_error(arch: str) -> None:
    path = tiny_vlm_dir(arch, text_config=TEXT, vision_config=VISION[arch])
    mc = ModelConfig(path, dtype="bfloat16", device="cuda")
    ns = SimpleNamespace(mc=mc)
    proc = load_multimodal_processor(path, mc.architecture)
    prompts = _prompts(proc)
    model = load_model(mc, device="cuda")
    h = KVHarness.for_config(model, mc, device="cuda")
    runner = SimpleNamespace(device="cuda", req_to_token_pool=h.req_to_token_pool, kv_pool=h.kv_pool,
                             model_config=mc, server_args=SimpleNamespace(tp_size=1))
    h.backend = create_attention_backend("triton", runner)
    rows = [h.new_request() for _ in prompts]
    chunks = [p.input_ids for p in prompts]
    fb = h.extend_batch(rows, chunks, return_logprob=True)
    fb.mm_inputs = [p.mm_inputs for p in prompts]
    fb.mrope_positions = torch.cat([p.mm_inputs.rope_positions(0, len(p.input_ids)) for p in prompts], 1).cuda()
    h.backend.init_forward_metadata(fb)
    with torch.inference_mode():
        out = model.forward(fb.input_ids, fb.positions, fb)
    ours = [logprobs(x) for x in torch.split(out.input_logits, [len(c) for c in chunks])]
    hf32, hf16 = _hf(path, torch.float32), _hf(path, torch.bfloat16)
    ref32 = [_hf_logprobs(hf32, ns, p) for p in prompts]
    ref16 = [_hf_logprobs(hf16, ns, p) for p in prompts]
    ours_d = torch.cat([(a - b).abs().flatten() for a, b in zip(ours, ref32)])
    hf_d = torch.cat([(a.float() - b).abs().flatten() for a, b in zip(ref16, ref32)])
    summary = (f"{arch}: ours max {ours_d.max():.3g} mean {ours_d.mean():.3g}; "
               f"transformers bf16 max {hf_d.max():.3g} mean {hf_d.mean():.3g}")
    print(summary)
    assert torch.isfinite(ours_d).all()
    assert ours_d.max() <= MAX_FACTOR * hf_d.max() + MAX_FLOOR, summary
    assert ours_d.mean() <= MEAN_FACTOR * hf_d.mean() + MEAN_FLOOR, summary


def test_scheduler_cuda_graph_decode_with_images() -> None:
    """Image requests through the scheduler with decode on CUDA graphs (positions shifted by each
    request's M-RoPE delta) agree with graphs off, batched and alone."""
    from sglang.testing.scheduler_harness import SchedulerHarness

    path = tiny_vlm_dir("qwen2_vl", text_config=TEXT, vision_config=VISION["qwen2_vl"])
    proc = load_multimodal_processor(path, "Qwen2VLForConditionalGeneration")
    prompts = [proc.process(f"<|im_start|>user\n{MARK}What is it?<|im_end|>\n<|im_start|>assistant\n",
                            [_pil(84, 112, 0)]),
               proc.process(f"<|im_start|>user\n{MARK}{MARK}Compare.<|im_end|>\n<|im_start|>assistant\n",
                            [_pil(56, 56, 1), _pil(140, 100, 2)])]
    params = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
    outs = {}
    for graphs in (True, False):
        h = SchedulerHarness(path, device="cuda", dtype="bfloat16", disable_cuda_graph=not graphs,
                             max_total_tokens=8192)
        assert (h.runner.graph_runner is not None) == graphs
        for i, p in enumerate(prompts):
            h.submit(str(i), input_ids=p.input_ids, params=params, mm_inputs=p.mm_inputs)
        done = h.run_until_idle()
        outs[graphs] = [done[str(i)].output_ids for i in range(len(prompts))]
        assert all(len(ids) == 16 for ids in outs[graphs])
        h.submit("alone", input_ids=prompts[1].input_ids, params=params, mm_inputs=prompts[1].mm_inputs)
        alone = h.run_until_idle()["alone"].output_ids
        assert alone[:4] == outs[graphs][1][:4]
    # bf16: a greedy choice may flip between kernels only at a near-tie; the first tokens agree.
    for a, b in zip(outs[True], outs[False]):
        assert a[:4] == b[:4]
