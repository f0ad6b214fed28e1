"""The Triton INT4 kernels against their torch twin: the GEMV (up to four rows, groups in input
order) and the dequantize-then-cuBLAS path (more rows, act-order maps); ragged K and N, group
sizes, float32/bfloat16; and an AWQ tiny model on the GPU."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.layers.quantization.int4_math import gemv_layout, int4_linear_twin, pack_nibbles

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _weights(n: int, k: int, group: int, act_order: bool, gen: torch.Generator):
    groups = -(-k // group)
    g_idx = torch.arange(k, device="cuda") // group
    if act_order:
        g_idx = g_idx[torch.randperm(k, device="cuda", generator=gen)]
    q = torch.randint(0, 16, (n, k), device="cuda", generator=gen, dtype=torch.uint8)
    scales = torch.rand(n, groups, device="cuda", generator=gen) * 0.02 + 0.001
    zeros = torch.randint(0, 17, (n, groups), device="cuda", generator=gen, dtype=torch.uint8)
    return pack_nibbles(q), scales, zeros, g_idx.to(torch.int32)


@pytest.mark.parametrize("m", [1, 3, 4, 5, 64, 200])
@pytest.mark.parametrize("n,k,group,act_order", [(4096, 4096, 128, False), (129, 77, 32, False),
                                                 (1000, 512, 64, True), (24, 300, 128, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_twin(m, n, k, group, act_order, dtype):
    from sglang.kernels.int4_gemm import int4_linear

    gen = torch.Generator(device="cuda").manual_seed(m * 7 + n + k)
    qweight, scales, zeros, g_idx = _weights(n, k, group, act_order, gen)
    x = torch.randn(m, k, device="cuda", generator=gen).to(dtype)
    bias = torch.randn(n, device="cuda", generator=gen).to(dtype)
    layout = gemv_layout(g_idx, group)
    assert (layout is None) == act_order
    got = int4_linear(x, qweight, scales, zeros, g_idx, bias, layout)
    want = int4_linear_twin(x, qweight, scales, zeros, g_idx, bias)
    assert got.dtype == dtype and got.shape == (m, n)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(got, want, **tol)


def test_awq_model_on_gpu_matches_cpu(tmp_path):
    from sglang.runtime.models.loader import load_model
    from sglang.runtime.models.model_config import ModelConfig
    from sglang.testing.fixtures import tiny_model_dir
    from sglang.testing.tiny_quantized import write_quantized

    path = write_quantized(tiny_model_dir("llama"), str(tmp_path / "awq"), "awq", group_size=32)
    ids = torch.tensor([3, 17, 5, 99, 42])
    out = {}
    for device in ("cpu", "cuda"):
        model = load_model(ModelConfig(path, dtype="float32", device=device), device=device)
        h = model.model.embed_tokens(ids.to(device))
        out[device] = model.model.layers[0].mlp(h).float().cpu()
    torch.testing.assert_close(out["cuda"], out["cpu"], atol=1e-4, rtol=1e-4)
