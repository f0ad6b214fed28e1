"""Gated activations of the MLP blocks: the input holds [gate | up] halves side by side.

The math lives in `*_ref` functions (plain torch) so a fused kernel with the same signature can
replace them on CUDA without touching the models: SiluAndMul runs `sglang.kernels.activation`
there (one read of gate|up, one write, float32 math) and, for float32 on CPU when the CPU path
switched it on, a C++ kernel; GeluAndMul has no kernel yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglang.kernels import use_triton


def _split_gate_up(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for x = [..., 2 * d] -> [..., d]."""
    gate, up = _split_gate_up(x)
    return F.silu(gate) * up


def gelu_tanh_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(gate) * up (the tanh approximation Gemma checkpoints were trained with)."""
    gate, up = _split_gate_up(x)
    return F.gelu(gate, approximate="tanh") * up


class SiluAndMul(nn.Module):
    # The C++ CPU kernels module, set by `cpu_kernels.apply_cpu_kernels` (None: torch ops).
    cpu_ops = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cpu_ops is not None and x.dtype == torch.float32 and x.dim() == 2 and x.is_contiguous():
            return self.cpu_ops.silu_and_mul(x, True)
        if use_triton(x):
            from sglang.kernels.activation import silu_and_mul

            return silu_and_mul(x if x.stride(-1) == 1 else x.contiguous())
        return silu_and_mul_ref(x)


class GeluAndMul(nn.Module):
    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        if approximate != "tanh":
            raise ValueError(f"GeluAndMul supports approximate='tanh' only, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_tanh_and_mul_ref(x)


# HF `hidden_act` names -> gated activation module factories.
_GATED_ACTIVATIONS = {
    "silu": SiluAndMul,
    "swish": SiluAndMul,
    "gelu_pytorch_tanh": GeluAndMul,
    "gelu_tanh": GeluAndMul,
}


def get_gated_activation(name: str) -> nn.Module:
    """Module for HF activation `name` applied as act(gate) * up."""
    try:
        return _GATED_ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unsupported hidden activation {name!r}; supported: {sorted(_GATED_ACTIVATIONS)}"
        ) from None
