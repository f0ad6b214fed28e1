"""The segmented LoRA shrink/expand Triton kernels run under Triton's interpreter on the CPU
(TRITON_INTERPRET=1, in a subprocess: it must be set before triton loads) and equal their torch
twins: decode-shaped batches interleaving adapters, prefill segments longer than a row block,
empty segments (a CUDA graph's fixed grid), sizes that are not tile multiples. The GPU check is
tests/gpu/test_lora_gpu.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sglang.kernels.ref.lora import lora_expand, lora_shrink
from sglang.runtime.lora.layers import plan_segments

SCRIPT = """
import torch
from sglang.kernels.lora_shrink import lora_shrink
from sglang.kernels.lora_expand import lora_expand
from sglang.kernels.ref import lora as ref
from sglang.runtime.lora.layers import plan_segments
for (counts, slots, K, N, M) in [([1, 1, 1, 1, 1], [1, 0, 2, 1, 1], 64, 48, 96), ([5, 37, 3], [2, 1, 0], 72, 16, 40),
                                 ([40], [3], 32, 32, 70), ([3, 3], [0, 0], 16, 16, 16),
                                 ([2, 3, 1], [1, 2, 1], 600, 48, 40), ([40], [1], 1100, 16, 24)]:  # K split 3 ways
    gen = torch.Generator().manual_seed(len(counts) + K)
    seg, rows, max_len = plan_segments(slots, counts)
    if len(counts) == 5:  # a graph's layout: one segment per slot, some empty, max_len = all rows
        seg = torch.cat([seg, torch.tensor([[0], [0], [3]])], dim=1)
        max_len = sum(counts)
    T = sum(counts)
    x = torch.randn(T, K, generator=gen)
    a = torch.randn(4, N, K, generator=gen)
    b = torch.randn(4, M, N, generator=gen)
    h = lora_shrink(x, a, seg, rows, max_len)
    assert h.shape[0] == (3 if K > 512 else 1), h.shape
    torch.testing.assert_close(h.sum(0), ref.lora_shrink(x, a, seg, rows, max_len).sum(0), rtol=1e-5, atol=1e-4)
    out = torch.randn(T, 2 * M, generator=gen)[:, :M]  # a strided view
    got = lora_expand(h, b, out.clone(), seg, rows, max_len)
    want = ref.lora_expand(h, b, out.clone(), seg, rows, max_len)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
print("ok")
"""


def test_lora_kernels_under_interpreter_match_twins():
    pytest.importorskip("triton")
    root = Path(__file__).parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_segments_group_rows_by_slot():
    seg, rows, max_len = plan_segments([1, 1, 0, 2, 2, 1], [3, 2, 4, 0, 1, 5])
    # slot 1: rows 0-4 and 10-14; slot 2: row 9; slot 0 rows (5-8) are in no segment
    assert seg.tolist() == [[0, 10], [10, 1], [1, 2]]
    assert rows.tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 9]
    assert max_len == 10


def test_twin_equals_per_row_formula():
    gen = torch.Generator().manual_seed(0)
    slots, counts = [2, 0, 1, 2], [3, 2, 1, 4]
    seg, rows, max_len = plan_segments(slots, counts)
    x, a, b = torch.randn(10, 8, generator=gen), torch.randn(3, 4, 8, generator=gen), torch.randn(3, 6, 4, generator=gen)
    out = lora_expand(lora_shrink(x, a, seg, rows, max_len), b, torch.zeros(10, 6), seg, rows, max_len)
    row_slot = [s for s, n in zip(slots, counts) for _ in range(n)]
    want = torch.stack([(x[i] @ a[s].t()) @ b[s].t() if s else torch.zeros(6) for i, s in enumerate(row_slot)])
    torch.testing.assert_close(out, want)
