"""Shared by the quantization tests: logits of a model over real KV pools, and float references
whose linear layers see their inputs as a quantized GEMM does."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from sglang.runtime.layers.linear import LinearBase
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import KVHarness

PROMPT_LENS = (3, 9, 21)


def logits(model: torch.nn.Module, mc: ModelConfig, kv_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Every prompt position's logits of a batched extend, then three batched decode steps."""
    h = KVHarness.for_config(model, mc) if kv_dtype is None else KVHarness(
        model, mc.num_hidden_layers, mc.num_key_value_heads, mc.head_dim, kv_dtype)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    rows = [h.new_request() for _ in prompts]
    out = [h.extend(rows, prompts, return_logprob=True).input_logits]
    for step in range(3):
        out.append(h.decode(rows, [(11 * step + 5 * i) % mc.vocab_size for i in range(len(rows))]).next_token_logits)
    return torch.cat(out)


def round_inputs(model: torch.nn.Module, rounding: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    """Make every linear layer of a float model compute F.linear(rounding(name, x), W, b)."""
    for name, module in model.named_modules():
        if isinstance(module, LinearBase) and not getattr(module, "keep_float", False):  # routers stay float
            def forward(x, m=module, n=name):
                return F.linear(rounding(n, x.reshape(-1, x.shape[-1])).reshape(x.shape), m.weight, m.bias)
            module.forward = forward


def fp8_round(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x / scale, -448.0, 448.0).to(torch.float8_e4m3fn).float() * scale


def fp8_per_token(x: torch.Tensor, group: Optional[int] = None) -> torch.Tensor:
    """Each row (or each `group` columns of a row) rounded to FP8 with its own amax scale."""
    if group is None:
        return fp8_round(x, torch.clamp(x.abs().amax(dim=1, keepdim=True) / 448.0, min=1e-12))
    return torch.cat([fp8_per_token(x[:, i:i + group]) for i in range(0, x.shape[1], group)], dim=1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()
