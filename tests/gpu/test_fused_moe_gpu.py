"""The Triton grouped-GEMM experts against their torch twin on the GPU: float32 tight (IEEE dot),
bf16 within bf16 rounding; decode-sized and prefill-sized batches, experts left without tokens,
dims that are not tile multiples; and a Mixtral model's MoE layers on CUDA equal the CPU twin."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.layers.activation import silu_and_mul_ref
from sglang.runtime.layers.moe.experts_torch import fused_experts_torch
from sglang.runtime.layers.moe.router import RouterConfig, select_experts

pytestmark = pytest.mark.gpu


def _case(tokens, experts, k, hidden, inter, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=gen) * hidden**-0.5
    w2 = torch.randn(experts, hidden, inter, generator=gen) * inter**-0.5
    weights, ids = select_experts(torch.randn(tokens, experts, generator=gen), RouterConfig(k))
    return [t.to("cuda", dtype) for t in (x, w13, w2)] + [weights.cuda(), ids.cuda()]


@pytest.mark.parametrize("tokens,experts,k,hidden,inter", [
    (1, 8, 2, 256, 384), (7, 8, 2, 200, 136), (64, 16, 4, 256, 128), (300, 60, 6, 128, 96), (33, 4, 1, 64, 32),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_experts_match_twin(tokens, experts, k, hidden, inter, dtype):
    from sglang.kernels.fused_moe import fused_experts

    x, w13, w2, weights, ids = _case(tokens, experts, k, hidden, inter, dtype)
    got = fused_experts(x, w13, w2, weights, ids)
    ref = fused_experts_torch(x.double(), w13.double(), w2.double(), weights.double(), ids, silu_and_mul_ref)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol * ref.abs().max().item())


def test_mixtral_layers_on_cuda_match_cpu_twin():
    from sglang.runtime.models.loader import load_model
    from sglang.runtime.models.model_config import ModelConfig
    from sglang.testing.fixtures import tiny_model_dir

    mc = ModelConfig(tiny_model_dir("mixtral"), dtype="float32", device="cuda")
    block_cpu = load_model(ModelConfig(tiny_model_dir("mixtral"))).model.layers[0].mlp
    block_gpu = load_model(mc, device="cuda").model.layers[0].mlp
    x = torch.randn(19, 64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(block_gpu(x.cuda()).cpu(), block_cpu(x), rtol=1e-4, atol=1e-4)
