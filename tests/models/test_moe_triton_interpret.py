"""The Triton grouped-GEMM experts (`sglang.kernels.fused_moe`) run under Triton's interpreter on
the CPU (TRITON_INTERPRET=1, in a subprocess: it must be set before triton loads) and equal the
torch twin: decode-sized and prefill-sized batches, experts without tokens, dims that are not
tile multiples. The compiled kernel's GPU check is tests/gpu/test_fused_moe_gpu.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

SCRIPT = """
import torch
from sglang.kernels.fused_moe import fused_experts
from sglang.runtime.layers.activation import silu_and_mul_ref
from sglang.runtime.layers.moe.experts_torch import fused_experts_torch
from sglang.runtime.layers.moe.router import RouterConfig, select_experts
for (T, E, k, H, I) in [(1, 8, 2, 64, 96), (7, 8, 2, 72, 40), (70, 16, 4, 64, 32), (33, 4, 1, 32, 16)]:
    gen = torch.Generator().manual_seed(T)
    x = torch.randn(T, H, generator=gen)
    w13 = torch.randn(E, 2 * I, H, generator=gen) * H**-0.5
    w2 = torch.randn(E, H, I, generator=gen) * I**-0.5
    w, ids = select_experts(torch.randn(T, E, generator=gen), RouterConfig(k))
    got = fused_experts(x, w13, w2, w, ids)
    ref = fused_experts_torch(x, w13, w2, w, ids, silu_and_mul_ref)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
print("ok")
"""


def test_triton_experts_under_interpreter_match_twin():
    root = Path(__file__).parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
