"""The GGUF block kernels (C++, `sglang.kernels.cpu`) against their torch twins
(`sglang.kernels.ref.gguf_quant`), and the twins against the `gguf` package itself.

Dequantization must be bit-identical everywhere (the quantized path computes with the file's own
numbers); matmuls may differ only by float32 summation order. Both the AVX-512 path (where the
CPU has it) and the portable path are checked.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from sglang.kernels.cpu.build import load_cpu_extension
from sglang.kernels.cpu.gguf import gguf_dequantize as fast_dequantize
from sglang.kernels.cpu.gguf import gguf_gemm as fast_gemm
from sglang.kernels.ref import gguf_quant as ref

gguf = pytest.importorskip("gguf")
TYPES = ("Q4_0", "Q4_1", "Q8_0")
ROWS_M = (1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 32, 70)


def _blocks(qtype_name: str, rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Real quantized blocks (gguf's quantizer), with outliers so scales differ per block."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((rows, k)).astype(np.float32)
    weights[:, ::37] *= 20
    return gguf.quants.quantize(weights, gguf.GGMLQuantizationType[qtype_name])


def _random_bytes(qtype_name: str, rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Arbitrary bit patterns in the blocks (any nibble, any finite fp16 scale and min)."""
    qtype = gguf.GGMLQuantizationType[qtype_name]
    rng = np.random.default_rng(seed)
    nbytes = ref.block_bytes(qtype.value)
    raw = rng.integers(0, 256, (rows, k // 32, nbytes), dtype=np.uint8)
    scales = rng.uniform(-2, 2, (rows, k // 32, 2)).astype(np.float16)
    raw[..., 0:2] = scales[..., 0:1].view(np.uint8)
    if qtype_name == "Q4_1":
        raw[..., 2:4] = scales[..., 1:2].view(np.uint8)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("qtype_name", TYPES)
@pytest.mark.parametrize("make", (_blocks, _random_bytes))
def test_twin_dequantizes_exactly_as_the_gguf_package(qtype_name, make):
    blocks = make(qtype_name, 24, 96)
    qtype = gguf.GGMLQuantizationType[qtype_name]
    expected = torch.from_numpy(np.array(gguf.quants.dequantize(blocks, qtype)))
    assert torch.equal(ref.gguf_dequantize(torch.from_numpy(blocks), qtype.value), expected)


@pytest.mark.parametrize("vector", (True, False))
@pytest.mark.parametrize("qtype_name", TYPES)
def test_kernel_dequantizes_bit_identically(cpu_ext, qtype_name, vector):
    blocks = torch.from_numpy(_random_bytes(qtype_name, 40, 160, seed=3))
    qtype = gguf.GGMLQuantizationType[qtype_name].value
    assert torch.equal(cpu_ext.gguf_dequantize(blocks, qtype, 160, vector), ref.gguf_dequantize(blocks, qtype))


@pytest.mark.parametrize("vector", (True, False))
@pytest.mark.parametrize("qtype_name", TYPES)
def test_kernel_gemm_matches_twin(cpu_ext, qtype_name, vector):
    qtype = gguf.GGMLQuantizationType[qtype_name].value
    n = 37  # rows not a multiple of any tile
    gen = torch.Generator().manual_seed(0)
    for k, m in [(192, m) for m in ROWS_M] + [(96, m) for m in (1, 4, 9)]:  # 6 blocks a row; 3: an odd last block
        w = torch.from_numpy(_blocks(qtype_name, n, k, seed=1))
        x = torch.randn(m, k, generator=gen)
        for bias in (None, torch.randn(n, generator=gen)):
            expected = ref.gguf_gemm(x, w, qtype, bias)
            got = cpu_ext.gguf_gemm(x, w, qtype, bias, vector)
            assert got.shape == (m, n) and got.dtype == torch.float32
            assert not torch.isnan(got).any()
            err = ((got - expected).abs().max() / expected.abs().max()).item()
            assert err < 1e-5, (m, bias is not None, err)


@pytest.mark.parametrize("qtype_name", TYPES)
def test_wrappers_match_twins(cpu_ext, qtype_name):
    qtype = gguf.GGMLQuantizationType[qtype_name].value
    w = torch.from_numpy(_blocks(qtype_name, 64, 128, seed=2))
    assert torch.equal(fast_dequantize(w, qtype), ref.gguf_dequantize(w, qtype))
    gen = torch.Generator().manual_seed(5)
    for m in (1, 31, 32, 96):
        x = torch.randn(m, 128, generator=gen).to(torch.bfloat16)
        expected = ref.gguf_gemm(x, w, qtype)
        got = fast_gemm(x, w, qtype)
        assert got.dtype == torch.float32 and not torch.isnan(got).any()
        assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-5, m


def test_kernel_rejects_malformed_inputs(cpu_ext):
    w = torch.from_numpy(_blocks("Q8_0", 4, 64))
    with pytest.raises(RuntimeError, match="does not hold"):
        cpu_ext.gguf_gemm(torch.randn(1, 96), w, 8, None, True)
    with pytest.raises(RuntimeError, match="unsupported GGUF tensor type"):
        cpu_ext.gguf_gemm(torch.randn(1, 64), w, 12, None, True)
    with pytest.raises(RuntimeError, match="float32"):
        cpu_ext.gguf_gemm(torch.randn(1, 64, dtype=torch.float64), w, 8, None, True)
    with pytest.raises(ValueError, match="no block kernel"):
        ref.gguf_dequantize(w, 12)


def test_embedding_twin_dequantizes_only_the_rows_asked_for():
    w = torch.from_numpy(_blocks("Q4_1", 50, 64))
    ids = torch.tensor([[3, 49], [0, 3]])
    rows = ref.gguf_embedding(ids, w, 3)
    assert rows.shape == (2, 2, 64)
    assert torch.equal(rows[0, 0], ref.gguf_dequantize(w, 3)[3]) and torch.equal(rows[1, 1], rows[0, 0])


def test_extension_loading_falls_back_with_a_logged_reason(monkeypatch, caplog):
    load = load_cpu_extension.__wrapped__  # uncached, so this test's environment applies
    with caplog.at_level(logging.INFO, logger="sglang.kernels.cpu.build"):
        monkeypatch.setenv("SGLANG_DISABLE_CPU_KERNELS", "1")
        assert load() is None
        monkeypatch.delenv("SGLANG_DISABLE_CPU_KERNELS")
        assert load("no_such_kernel") is None  # the build fails: no source
    assert "SGLANG_DISABLE_CPU_KERNELS=1" in caplog.text
    assert "(no_such_kernel) unavailable" in caplog.text and "falling back" in caplog.text


@pytest.mark.parametrize("vector", (True, False))
@pytest.mark.parametrize("qtype_name", TYPES)
def test_a_rows_result_does_not_depend_on_its_batch(cpu_ext, qtype_name, vector):
    """Same kernel, same summation order for every row count: batching never changes a token."""
    qtype = gguf.GGMLQuantizationType[qtype_name].value
    w = torch.from_numpy(_blocks(qtype_name, 45, 160, seed=4))  # 5 blocks a row: pairs and an odd one
    x = torch.randn(70, 160, generator=torch.Generator().manual_seed(6))
    whole = cpu_ext.gguf_gemm(x, w, qtype, None, vector)
    for rows in (slice(0, 1), slice(3, 5), slice(10, 14), slice(20, 29)):
        assert torch.equal(cpu_ext.gguf_gemm(x[rows], w, qtype, None, vector), whole[rows]), rows
