"""Triton RMSNorm (+fused residual), rotary embedding (alone and fused with the KV-pool write),
SiLU-and-mul, the KV-index gather and the fused one-row GEMV vs their torch twins."""

import pytest
import torch

pytest.importorskip("triton")

from tests.gpu.kernel_checks import (  # noqa: E402
    check_gather_kv_indices,
    check_gemv,
    check_rmsnorm,
    check_rotary,
    check_rotary_and_store_kv,
    check_silu_and_mul,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("rows,hidden", [(1, 4096), (37, 4096), (64, 1000), (3, 16384)])
@pytest.mark.parametrize("gemma", [False, True])
def test_rmsnorm(rows, hidden, gemma):
    check_rmsnorm("cuda", rows, hidden, gemma=gemma, seed=rows + hidden)


def test_rmsnorm_float16():
    check_rmsnorm("cuda", 9, 2048, dtype=torch.float16)


@pytest.mark.parametrize("rows,inter", [(1, 14336), (33, 1000), (128, 11008)])
def test_silu_and_mul(rows, inter):
    check_silu_and_mul("cuda", rows, inter, seed=rows)


@pytest.mark.parametrize(
    "num_heads,num_kv_heads,head_dim,rot_dim,is_neox",
    [(32, 8, 128, 128, True), (32, 8, 128, 128, False), (16, 4, 128, 64, True), (12, 2, 80, 80, True), (8, 1, 256, 256, False)],
)
def test_rotary_llama3_cache(num_heads, num_kv_heads, head_dim, rot_dim, is_neox):
    check_rotary("cuda", 67, num_heads, num_kv_heads, head_dim, rot_dim, is_neox, seed=head_dim + rot_dim)


@pytest.mark.parametrize(
    "num_tokens,num_heads,num_kv_heads,head_dim,rot_dim,is_neox",
    [(1, 32, 8, 128, 128, True), (160, 32, 8, 128, 128, True), (33, 16, 4, 128, 64, True),
     (9, 12, 2, 80, 80, False), (5, 8, 1, 256, 256, True), (2048, 14, 2, 64, 64, True)],
)
def test_rotary_and_store_kv(num_tokens, num_heads, num_kv_heads, head_dim, rot_dim, is_neox):
    check_rotary_and_store_kv("cuda", num_tokens, num_heads, num_kv_heads, head_dim, rot_dim, is_neox,
                              seed=num_tokens + head_dim)


@pytest.mark.parametrize("lens", [[1], [5, 0, 1030, 77], [3000] * 3 + [1] * 20])
def test_gather_kv_indices(lens):
    check_gather_kv_indices("cuda", lens, seed=len(lens))


# Llama-3-8B / Qwen2.5-0.5B projections as the one-token path calls them, plus ragged sizes.
GEMV_CASES = [
    (6144, 4096, "rmsnorm", False, False), (4096, 4096, "none", False, True),
    (28672, 4096, "rmsnorm", False, False), (4096, 14336, "silu_mul", False, True),
    (128256, 4096, "none", False, False), (1152, 896, "rmsnorm", True, False),
    (896, 4864, "silu_mul", True, True), (1000, 999, "none", True, True), (37, 3000, "rmsnorm", False, False),
]


@pytest.mark.parametrize("n,k,prologue,bias,residual", GEMV_CASES)
def test_gemv(n, k, prologue, bias, residual):
    check_gemv("cuda", n, k, prologue, bias, residual, seed=n + k)


@pytest.mark.parametrize("prologue", ["none", "rmsnorm", "silu_mul"])
def test_gemv_float16(prologue):
    check_gemv("cuda", 2048, 2048, prologue, True, True, dtype=torch.float16)
