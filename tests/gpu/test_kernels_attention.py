"""Triton decode/extend attention vs their torch twins (float64) on fresh random paged inputs."""

import pytest
import torch

pytest.importorskip("triton")

from tests.gpu.kernel_checks import check_decode, check_extend  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _lens(n: int, hi: int, seed: int) -> list:
    return torch.randint(1, hi, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize(
    "num_heads,num_kv_heads,head_dim,v_head_dim",
    [(32, 8, 128, None), (8, 8, 64, None), (28, 4, 128, None), (16, 2, 256, None), (8, 2, 80, None), (12, 4, 96, 64)],
)
def test_decode_shapes(num_heads, num_kv_heads, head_dim, v_head_dim):
    lens = _lens(9, 1200, seed=head_dim) + [1, 2]
    check_decode("cuda", lens, num_heads, num_kv_heads, head_dim, v_head_dim, seed=head_dim)


@pytest.mark.parametrize("num_kv_splits", [1, 3, 16, 32])
def test_decode_split_counts(num_kv_splits):
    check_decode("cuda", [1, 5, 31, 700, 2049], num_kv_splits=num_kv_splits, use_scratch=True, seed=num_kv_splits)


def test_decode_logit_cap():
    lens = _lens(6, 600, seed=1)
    check_decode("cuda", lens, logit_cap=5.0, scale_mult=4.0, seed=1)


@pytest.mark.parametrize("window", [1, 64, 4096])
def test_decode_sliding_window(window):
    check_decode("cuda", [1, 63, 64, 65, 1000, 3000], sliding_window=window, seed=window)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_decode_other_dtypes(dtype):
    check_decode("cuda", _lens(5, 400, seed=2), dtype=dtype, seed=2)


def test_decode_zero_length_rows_give_zeros():
    # CUDA-graph padding may use seq_len 0: those rows must be 0, never NaN, and others unaffected.
    check_decode("cuda", [0, 17, 0, 300], seed=3)
    check_decode("cuda", [0, 0], seed=3)


@pytest.mark.parametrize(
    "num_heads,num_kv_heads,head_dim,v_head_dim",
    [(32, 8, 128, None), (8, 8, 64, None), (16, 2, 256, None), (8, 2, 80, None), (12, 4, 96, 64)],
)
def test_extend_shapes(num_heads, num_kv_heads, head_dim, v_head_dim):
    # No prefix, short prefix, single-token extend (a MIXED batch's decode), long extend over many blocks.
    check_extend("cuda", [0, 17, 300, 5], [40, 1, 130, 257], num_heads, num_kv_heads, head_dim, v_head_dim, seed=head_dim)


def test_extend_logit_cap():
    check_extend("cuda", [0, 33, 100], [70, 9, 64], logit_cap=5.0, scale_mult=4.0, seed=4)


@pytest.mark.parametrize("window", [1, 16, 100])
def test_extend_sliding_window(window):
    check_extend("cuda", [0, 50, 200, 3], [150, 1, 70, 90], sliding_window=window, seed=window)


def test_extend_float16():
    check_extend("cuda", [10, 0], [70, 33], dtype=torch.float16, seed=5)
