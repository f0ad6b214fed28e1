"""Gemma 3's image attention on the GPU: the Triton extend kernel with per-token limits
(`visible_until`) against its float64 torch twin, and the whole model through the triton backend
against the torch_native backend on the CPU (both float32)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from sglang.testing.fixtures import tiny_vlm_dir
from tests.gpu.kernel_checks import assert_close, make_paged_kv, poisoned

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def check_extend_with_limits(device: str, prefix_lens: List[int], extend_lens: List[int],
                             images: List[List[Tuple[int, int]]], sliding_window: Optional[int] = None,
                             logit_cap: float = 0.0, dtype=torch.bfloat16, seed: int = 0) -> None:
    """`images[i]`: (offset, length) spans in request i's sequence, each inside its extend range."""
    from sglang.kernels.extend_attention import extend_attention_fwd
    from sglang.kernels.ref.extend_attention import extend_attention_fwd as extend_ref

    gen = torch.Generator().manual_seed(seed)
    num_heads, num_kv_heads, head_dim = 8, 2, 64
    kv = make_paged_kv(prefix_lens, num_kv_heads, head_dim, head_dim, dtype, device, gen)
    n = sum(extend_lens)
    q, k, v = (torch.randn(n, h, head_dim, generator=gen).to(dtype).to(device)
               for h in (num_heads, num_kv_heads, num_kv_heads))
    limits = []
    for prefix, ext, spans in zip(prefix_lens, extend_lens, images):
        lim = list(range(prefix, prefix + ext))
        for off, length in spans:
            assert prefix <= off and off + length <= prefix + ext
            lim[off - prefix:off - prefix + length] = [off + length - 1] * length
        limits += lim
    visible_until = torch.tensor(limits, dtype=torch.int64, device=device)
    ext = torch.tensor(extend_lens, dtype=torch.int64, device=device)
    seq_lens = torch.tensor(prefix_lens, dtype=torch.int64, device=device) + ext
    start = torch.cumsum(ext, 0) - ext
    tail = (kv.req_to_token, kv.req_pool_indices, seq_lens, ext, start, max(extend_lens), head_dim**-0.5,
            logit_cap, sliding_window)
    o = poisoned((n, num_heads, head_dim), dtype, device)
    extend_attention_fwd(q, k, v, o, kv.k_buffer, kv.v_buffer, *tail, visible_until=visible_until)
    ref = torch.empty(n, num_heads, head_dim, dtype=torch.float64, device=device)
    extend_ref(q.double(), k.double(), v.double(), ref, kv.k_buffer.double(), kv.v_buffer.double(), *tail,
               visible_until=visible_until)
    causal = torch.empty_like(ref)
    extend_ref(q.double(), k.double(), v.double(), causal, kv.k_buffer.double(), kv.v_buffer.double(), *tail)
    what = f"extend with images {images} prefix={prefix_lens} ext={extend_lens} window={sliding_window}"
    assert_close(o, ref, what=what)
    assert (ref - causal).abs().max() > 1e-2, "the limits changed nothing: the case tests no image"


# Images crossing BLOCK_M (64) boundaries, starting a pass, right after a cached prefix, a
# request without any, and a single-token extend beside them.
CASES = [
    ([0, 30, 5, 7], [200, 150, 40, 1], [[(10, 100), (120, 70)], [(30, 16), (100, 70)], [], []]),
    ([3], [300], [[(3, 256), (280, 16)]]),
]


@pytest.mark.parametrize("window", [None, 8, 100])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_extend_kernel_with_image_limits(case: int, window: Optional[int]) -> None:
    check_extend_with_limits("cuda", *CASES[case], sliding_window=window, seed=case)


def test_extend_kernel_with_image_limits_float32_and_cap() -> None:
    check_extend_with_limits("cuda", *CASES[0], sliding_window=8, logit_cap=3.0, dtype=torch.float32)


def _images(n: int, seed: int) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 60, 3), dtype=np.uint8)) for i in range(n)]


@torch.inference_mode()
def test_model_on_triton_matches_torch_native() -> None:
    """Three requests (1-3 images) in one extend batch, one of them on a prefix cut at an image start."""
    from sglang.runtime.layers.attention.triton_backend import TritonAttnBackend
    from sglang.runtime.models.loader import load_model
    from sglang.runtime.models.model_config import ModelConfig
    from sglang.runtime.multimodal.registry import load_multimodal_processor
    from tests.models.harness import KVHarness

    path = tiny_vlm_dir("gemma3")
    proc = load_multimodal_processor(path, ModelConfig(path).architecture)
    prompts = [proc.process("Look: " + "<start_of_image> then " * n + "tell me.", _images(n, n)) for n in (1, 2, 3)]
    cut = prompts[2].mm_inputs.items[1].offset
    outputs = {}
    for device, backend in (("cpu", "torch_native"), ("cuda", "triton")):
        mc = ModelConfig(path, dtype="float32", device=device)
        h = KVHarness.for_config(load_model(mc, device=device), mc, device=device)
        if backend == "triton":  # the harness's runner stand-in lacks what the triton backend sizes by
            h.backend = TritonAttnBackend(SimpleNamespace(device=device, req_to_token_pool=h.req_to_token_pool,
                                                          kv_pool=h.kv_pool, model_config=mc))
        rows = [h.new_request() for _ in prompts]
        passes = [([rows[2]], [prompts[2].input_ids[:cut]], [prompts[2].mm_inputs]),
                  (rows, [p.input_ids for p in prompts[:2]] + [prompts[2].input_ids[cut:]],
                   [p.mm_inputs for p in prompts])]
        logits = []
        for pass_rows, chunks, mm in passes:
            fb = h.extend_batch(pass_rows, chunks, return_logprob=True)
            fb.mm_inputs = mm
            h.backend.init_forward_metadata(fb)
            logits.append(h.model.forward(fb.input_ids, fb.positions, fb).input_logits.float().cpu())
            h.commit(pass_rows, chunks)
        outputs[backend] = torch.log_softmax(torch.cat(logits), dim=-1)
    err = (outputs["triton"] - outputs["torch_native"]).abs().max().item()
    assert err < 2e-3, f"triton vs torch_native prompt log-probs differ by {err:.2e}"
