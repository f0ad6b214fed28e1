"""The fused one-token path (`LlamaDecoderLayer.forward_one_token` on `sglang.kernels.gemv`) gives
the same logits as the layer-by-layer path, in float32 on the CPU.

Triton's interpreter runs the GEMV kernels on CPU tensors, but it must be switched on before triton
is first imported, so each comparison runs in a fresh interpreter (`python -c`) with
TRITON_INTERPRET=1. On CUDA the same kernels run compiled; tests/gpu checks them against their
twins and the bf16 model end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List

import pytest
import torch

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.one_token_gemv import apply_one_token_gemv, one_token_gemv_blockers

pytest.importorskip("triton")

VARIANTS = {
    "llama": ("llama", {}),
    "qwen2-bias": ("qwen2", {}),
    "qwen3-qk-norm": ("qwen3", {}),
    "mistral-tied": ("mistral", {"tie_word_embeddings": True}),
}
TOL = 1e-5  # float32: the paths differ in summation order only (measured ~7e-7)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compare_paths(path: str, steps: int = 4) -> dict:
    """Fused vs layer-by-layer over one prefill and `steps` one-token steps of the same request, each
    path on its own KV pool: max relative logit difference and how many fused layer calls ran."""
    from sglang.runtime.models.llama import LlamaDecoderLayer
    from tests.models.harness import KVHarness

    mc = ModelConfig(path)
    model = load_model(mc)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, mc.vocab_size, (9,), generator=gen).tolist()
    tokens = torch.randint(0, mc.vocab_size, (steps,), generator=gen).tolist()
    fused_calls, logits = [], []
    original = LlamaDecoderLayer.forward_one_token

    def counted(self, *args):
        fused_calls.append(1)
        return original(self, *args)

    LlamaDecoderLayer.forward_one_token = counted
    try:
        for fused in (False, True):
            model.model.one_token_gemv = model.logits_processor.one_row_gemv = fused
            h = KVHarness.for_config(model, mc)
            row = h.new_request()
            h.extend([row], [prompt])
            outs = [h.extend([row], [[tokens[0]]]).next_token_logits]  # a one-token extend takes the path too
            outs += [h.decode([row], [t]).next_token_logits for t in tokens[1:]]
            logits.append(outs)
    finally:
        LlamaDecoderLayer.forward_one_token = original
    err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*logits))
    return {"err": err, "fused_calls": len(fused_calls), "expected_calls": steps * mc.num_hidden_layers}


def test_fused_one_token_path_matches_layer_by_layer(tiny_ckpt):
    paths = {name: tiny_ckpt(arch, **overrides) for name, (arch, overrides) in VARIANTS.items()}
    # One fresh interpreter for all variants (TRITON_INTERPRET must be set before triton loads).
    code = ("import json; from tests.models.test_one_token_gemv import compare_paths; "
            f"print(json.dumps({{k: compare_paths(p) for k, p in {paths!r}.items()}}))")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, r in results.items():
        assert r["fused_calls"] == r["expected_calls"], f"{name}: the fused path did not run every step: {r}"
        assert r["err"] < TOL, f"{name}: fused one-token logits differ by {r['err']:.2e} (relative)"


def test_transform_refuses_what_it_cannot_serve(tiny_ckpt):
    gemma = load_model(ModelConfig(tiny_ckpt("gemma2")))
    assert one_token_gemv_blockers(gemma)
    llama = load_model(ModelConfig(tiny_ckpt("llama")))
    assert one_token_gemv_blockers(llama) == ["weights are not bfloat16/float16 on CUDA"]
    assert not apply_one_token_gemv(llama) and not llama.model.one_token_gemv
    assert not apply_one_token_gemv(gemma)
