"""The Triton quantized-linear kernels under Triton's interpreter on the CPU (TRITON_INTERPRET=1,
in a subprocess: it must be set before triton loads) against their torch twins: the FP8 GEMV
(per-row, static and block-wise scales) with the fused activation quantizer, and the INT4 GEMV and
dequantize paths (groups 32/64/128/per-channel, an offset first group, act-order). The compiled
kernels' GPU checks are tests/gpu/test_fp8_gemm.py and test_int4_gemm.py.

The interpreter's float32 -> FP8 conversion misrounds values just below a power of two (it gives
16 for -31.6, where the GPU and torch give 32), so the FP8 script feeds activations that are
already on the FP8 grid: the kernel's arithmetic is what is checked here, the rounding on the GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

FP8_SCRIPT = """
import torch
from sglang.kernels.fp8_gemv import fp8_gemv, quantize_rows_fp8
from sglang.runtime.layers.quantization.fp8_math import fp8_linear_twin, quantize_rows, quantize_blocks
gen = torch.Generator().manual_seed(0)
def representable(m, k, s):
    # activations already on the FP8 grid (x / s exact), one entry at 448 so the dynamic scale is s
    q = (torch.randn(m, k, generator=gen) * 40).to(torch.float8_e4m3fn).float()
    q[:, 0] = 448.0
    return q * s
for (m, n, k) in [(1, 48, 80), (3, 40, 256), (4, 17, 1030)]:
    x = representable(m, k, 0.01)
    w = torch.randn(n, k, generator=gen) * k ** -0.5
    wq, ws = quantize_rows(w)
    bias = torch.randn(n, generator=gen)
    for static in (None, torch.tensor(0.01)):
        got = fp8_gemv(x, wq, ws, None, static, bias)
        ref = fp8_linear_twin(x, wq, ws, None, static, bias)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    bq, bs = quantize_blocks(w, (128, 128))
    row_scale = bs.repeat_interleave(128, dim=0)[:n]
    xb = representable(m, k, 0.01)
    xb[:, 128::128] = 448.0 * 0.01  # every 128-column block reaches 448 on the grid too
    got = fp8_gemv(xb, bq, row_scale, 128, None, None)
    ref = fp8_linear_twin(xb, bq, row_scale, 128, None, None)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    q, s = quantize_rows_fp8(x)
    q2, s2 = quantize_rows(x)
    torch.testing.assert_close(s, s2); torch.testing.assert_close(q.float(), q2.float())
print("ok")"""

INT4_SCRIPT = """
import torch
from sglang.kernels.int4_gemm import int4_linear
from sglang.runtime.layers.quantization.int4_math import int4_linear_twin, pack_nibbles, gemv_layout
gen = torch.Generator().manual_seed(0)
def case(n, k, group, act_order, first=0):
    groups_total = 1 if group == -1 else -(-(k + first * max(group, 1)) // group)
    qweight = pack_nibbles(torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8))
    ng = groups_total
    scales = torch.rand(n, ng, generator=gen) * 0.02 + 0.001
    zeros = torch.randint(0, 16, (n, ng), generator=gen, dtype=torch.uint8)
    if group == -1:
        g_idx = torch.zeros(k, dtype=torch.int32)
    else:
        g_idx = (first + torch.arange(k) // group).to(torch.int32)
        if act_order:
            g_idx = g_idx[torch.randperm(k, generator=gen)]
    return qweight, scales, zeros, g_idx
for (n, k, group, act, first) in [(40, 256, 128, False, 0), (17, 96, 32, False, 1), (24, 300, -1, False, 0),
                                  (16, 128, 64, True, 0), (9, 130, 32, False, 0)]:
    qw, s, z, g = case(n, k, group, act, first)
    layout = gemv_layout(g, group)
    assert (layout is None) == act, (layout, act)
    bias = torch.randn(n, generator=gen)
    for m in (1, 3, 7, 40) + ((520,) if n == 9 else ()):  # GEMV, fused tl.dot, dequantize + matmul
        x = torch.randn(m, k, generator=gen)
        got = int4_linear(x, qw, s, z, g, bias, layout)
        ref = int4_linear_twin(x, qw, s, z, g, bias)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
print("ok")"""


@pytest.mark.parametrize("script", [FP8_SCRIPT, INT4_SCRIPT], ids=["fp8_gemv", "int4"])
def test_kernels_under_interpreter_match_twin(script):
    root = Path(__file__).parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]
