"""FP8 KV cache (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`): the pool stores value / scale in one byte and
reads back fp8 * scale; a model over an FP8 pool computes exactly what it computes over a float
pool whose K/V were rounded to FP8; the same memory holds twice the tokens of bfloat16."""

from __future__ import annotations

import pytest
import torch

import sglang
from sglang.runtime.mem_cache.kv_quant import resolve_kv_cache_dtype
from sglang.runtime.mem_cache.memory_pool import KVPool
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir
from tests.quantization.helpers import logits, rel_err

FP8_KV = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@pytest.mark.parametrize("name", list(FP8_KV))
@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_pool_round_trip(name, scale):
    dtype = resolve_kv_cache_dtype(name, torch.float32)
    pool = KVPool(16, dtype, 2, 8, 1, "cpu")
    pool.set_kv_scales(0, scale, 2 * scale)
    assert pool.k_buffer[0].element_size() == 1
    k = torch.randn(3, 16) * 4
    k[0, 0] = 1e6  # beyond the format: saturates instead of becoming NaN/inf
    v = torch.randn(3, 16)
    loc = torch.tensor([2, 7, 5])
    pool.set_kv_buffer(0, loc, k, v)
    got_k, got_v = pool.read_kv(0, pool.k_buffer[0][loc], pool.v_buffer[0][loc], torch.float32)
    limit = torch.finfo(dtype).max
    want_k = (k / scale).clamp(-limit, limit).to(dtype).float() * scale
    want_v = (v / (2 * scale)).to(dtype).float() * (2 * scale)
    assert torch.equal(got_k.reshape(3, 16), want_k) and torch.equal(got_v.reshape(3, 16), want_v)
    assert torch.isfinite(got_k).all() and got_k[0, 0, 0] == limit * scale


class _RoundingPool(KVPool):
    """A float32 pool whose stored K/V are FP8-rounded: the reference for the FP8 pool."""

    fp8 = torch.float8_e4m3fn

    def set_kv_buffer(self, layer_id, loc, k, v):
        limit = torch.finfo(self.fp8).max
        super().set_kv_buffer(layer_id, loc, k.clamp(-limit, limit).to(self.fp8).float(),
                              v.clamp(-limit, limit).to(self.fp8).float())


@pytest.mark.parametrize("name", list(FP8_KV))
@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_model_over_fp8_pool_equals_float_math_on_rounded_kv(name, arch, monkeypatch):
    mc = ModelConfig(tiny_model_dir(arch))
    model = load_model(mc)
    fp8 = logits(model, mc, kv_dtype=FP8_KV[name])
    dense = logits(model, mc)
    monkeypatch.setattr(_RoundingPool, "fp8", FP8_KV[name])
    monkeypatch.setattr("tests.models.harness.KVPool", _RoundingPool)
    rounded = logits(model, mc)
    torch.testing.assert_close(fp8, rounded, atol=1e-5, rtol=1e-5)
    # Near the float pool's logits (loosely: this random tiny model amplifies rounding), not equal.
    assert not torch.equal(fp8, dense) and rel_err(fp8, dense) < 0.5


def _capacity(kv_cache_dtype: str) -> int:
    args = ServerArgs(model_path=tiny_model_dir("llama"), device="cpu", dtype="bfloat16",
                      kv_cache_dtype=kv_cache_dtype, cpu_memory_budget_gb=0.01, disable_cpu_kernels=True)
    return ModelRunner(args).max_total_num_tokens


def test_fp8_pool_holds_twice_the_tokens_of_bfloat16():
    bf16, fp8 = _capacity("auto"), _capacity("fp8_e4m3")
    assert fp8 / bf16 >= 1.95, (fp8, bf16)  # the req_to_token table's share keeps it just under 2


def test_engine_generates_with_fp8_kv_cache():
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", kv_cache_dtype="fp8_e5m2",
                       random_seed=0) as eng:
        out = eng.generate("Hello there", {"max_new_tokens": 6, "temperature": 0.0})
        assert out["meta_info"]["completion_tokens"] >= 1


def test_unknown_kv_cache_dtype_is_refused():
    with pytest.raises(ValueError, match="kv_cache_dtype must be one of"):
        resolve_kv_cache_dtype("fp4", torch.float32)
