"""GGUF block matmuls on the CPU: the C++ kernel (`gguf_gemm.cpp`) behind the signatures of the
torch twins in `sglang.kernels.ref.gguf_quant` (whose docstring gives the arithmetic: llama.cpp's,
activations quantized to int8 per 32-value block). Every row count takes the same kernel, so a
token's result does not depend on its batch.
"""

from __future__ import annotations

from types import ModuleType
from typing import Optional

import torch

from sglang.kernels.cpu.build import load_cpu_extension
from sglang.kernels.ref import gguf_quant as ref


def gguf_extension() -> Optional[ModuleType]:
    """The compiled kernels, or None when they cannot be built here (reason logged once)."""
    return load_cpu_extension()


def gguf_gemm(x: torch.Tensor, w: torch.Tensor, qtype: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """float32 [M, N] = x [M, K] times the blocks of w; the twin is ref.gguf_gemm."""
    ext = gguf_extension()
    if ext is None:
        return ref.gguf_gemm(x, w, qtype, bias)
    return ext.gguf_gemm(x.float(), w, qtype, bias, True)


def gguf_dequantize(w: torch.Tensor, qtype: int) -> torch.Tensor:
    """float32 [N, K] from blocks; the twin is ref.gguf_dequantize."""
    ext = gguf_extension()
    if ext is None:
        return ref.gguf_dequantize(w, qtype)
    return ext.gguf_dequantize(w, qtype, ref.row_weights(w, qtype), True)
