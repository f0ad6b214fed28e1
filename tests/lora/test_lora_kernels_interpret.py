"""The segmented LoRA shrink/expand Triton kernels run under Triton's interpreter on the CPU
(TRITON_INTERPRET=1, in a subprocess: it must be set before triton loads) and equal their torch
twins: decode-shaped batches (one row per segment, slot 0 rows skipped), prefill segments longer
than a row block, and sizes that are not tile multiples. The GPU check is tests/gpu/test_lora_gpu.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sglang.kernels.ref.lora import lora_expand, lora_shrink
from sglang.runtime.lora.layers import build_segments

pytest.importorskip("triton")

SCRIPT = """
import torch
from sglang.kernels.lora_shrink import lora_shrink
from sglang.kernels.lora_expand import lora_expand
from sglang.kernels.ref import lora as ref
from sglang.runtime.lora.layers import build_segments
for (counts, slots, K, N, M) in [([1, 1, 1, 1, 1], [1, 0, 2, 1, 1], 64, 48, 96), ([5, 37, 3], [2, 1, 0], 72, 16, 40),
                                 ([40], [3], 32, 32, 70), ([3, 3], [0, 0], 16, 16, 16)]:
    gen = torch.Generator().manual_seed(len(counts) + K)
    (starts, lens, segslots), max_len = build_segments(slots, counts)
    seg = torch.tensor([starts, lens, segslots], dtype=torch.int64)
    T = sum(counts)
    x = torch.randn(T, K, generator=gen)
    a = torch.randn(4, N, K, generator=gen)
    b = torch.randn(4, M, N, generator=gen)
    h = lora_shrink(x, a, seg, max_len)
    torch.testing.assert_close(h, ref.lora_shrink(x, a, seg, max_len), rtol=1e-5, atol=1e-4)
    out = torch.randn(T, 2 * M, generator=gen)[:, :M]  # a strided view, as the wrapped layers pass
    got = lora_expand(h, b, out.clone(), seg, max_len)
    want = ref.lora_expand(h, b, out.clone(), seg, max_len)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
print("ok")
"""


def test_lora_kernels_under_interpreter_match_twins():
    root = Path(__file__).parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_segments_merge_runs_and_skip_empty():
    (starts, lens, slots), max_len = build_segments([1, 1, 0, 2, 2, 1], [3, 2, 4, 0, 1, 5])
    assert (starts, lens, slots) == ([0, 5, 9, 10], [5, 4, 1, 5], [1, 0, 2, 1])
    assert max_len == 5  # slot-0 runs do not count


def test_twin_equals_per_row_formula():
    gen = torch.Generator().manual_seed(0)
    slots, counts = [2, 0, 1, 2], [3, 2, 1, 4]
    (starts, lens, seg_slots), max_len = build_segments(slots, counts)
    seg = torch.tensor([starts, lens, seg_slots])
    x, a, b = torch.randn(10, 8, generator=gen), torch.randn(3, 4, 8, generator=gen), torch.randn(3, 6, 4, generator=gen)
    out = lora_expand(lora_shrink(x, a, seg, max_len), b, torch.zeros(10, 6), seg, max_len)
    row_slot = [s for s, n in zip(slots, counts) for _ in range(n)]
    want = torch.stack([(x[i] @ a[s].t()) @ b[s].t() if s else torch.zeros(6) for i, s in enumerate(row_slot)])
    torch.testing.assert_close(out, want)
