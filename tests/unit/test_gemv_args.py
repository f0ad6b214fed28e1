"""The fused GEMV refuses bad arguments with a message naming the problem, before any launch."""

import pytest
import torch

pytest.importorskip("triton")

from sglang.kernels.gemv import block_config, gemv  # noqa: E402


def _args(n: int = 8, k: int = 16):
    return torch.randn(1, k, dtype=torch.bfloat16), torch.randn(n, k, dtype=torch.bfloat16)


@pytest.mark.parametrize("bad,match", [
    (lambda x, w: gemv(x.expand(2, -1), w), "one row"),
    (lambda x, w: gemv(x, w[:, :8]), "weight must be"),
    (lambda x, w: gemv(x, w.t().contiguous().t()), "contiguous"),
    (lambda x, w: gemv(x, w, torch.zeros(7, dtype=torch.bfloat16)), "bias must be"),
    (lambda x, w: gemv(x, w, norm_weight=torch.ones(8, dtype=torch.bfloat16)), "norm_weight must be"),
    (lambda x, w: gemv(x, w, norm_weight=torch.ones(16), silu_mul=True), "one prologue"),
    (lambda x, w: gemv(x[:, :15], w[:, :7], silu_mul=True), "even last dim"),
    (lambda x, w: gemv(x, w, residual=torch.zeros(1, 8)), "residual must be"),
    (lambda x, w: gemv(x, torch.randn(16, 16, dtype=torch.bfloat16), residual=x), "must not alias"),
])
def test_bad_arguments_are_refused(bad, match):
    x, w = _args()
    with pytest.raises(ValueError, match=match):
        bad(x, w)


def test_block_config_keeps_programs_per_sm_for_narrow_outputs():
    assert block_config(128256, 4096)[:2] == (16, 256)
    assert block_config(4096, 14336)[:2] == (8, 512)
