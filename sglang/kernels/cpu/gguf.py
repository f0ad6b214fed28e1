"""GGUF block matmuls on the CPU: the C++ kernel (`gguf_gemm.cpp`) behind the signatures of the
torch twins in `sglang.kernels.ref.gguf_quant`.

Few rows (decode) run the kernel, which dequantizes each block in registers and streams only the
quantized bytes. Many rows (prefill, large batches) are compute-bound: the matrix is dequantized
once into float32 (the same values) and multiplied by torch's GEMM, whose blocking beats the
kernel's once enough rows share each weight.
"""

from __future__ import annotations

from types import ModuleType
from typing import Optional

import torch

from sglang.kernels.cpu.build import load_cpu_extension
from sglang.kernels.ref import gguf_quant as ref

# Rows of x from which dequantize-then-GEMM beats the register kernel (measured on a 2-core
# Zen 4 with SmolLM2's shapes: see docs/architecture.md, CPU path).
GEMM_MIN_ROWS = 32


def gguf_extension() -> Optional[ModuleType]:
    """The compiled kernels, or None when they cannot be built here (reason logged once)."""
    return load_cpu_extension("gguf_gemm")


def gguf_gemm(x: torch.Tensor, w: torch.Tensor, qtype: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """float32 [M, N] = x [M, K] @ dequantize(w)^T (+ bias); the twin is ref.gguf_gemm."""
    ext = gguf_extension()
    if ext is None:
        return ref.gguf_gemm(x, w, qtype, bias)
    x = x.float()
    if x.shape[0] >= GEMM_MIN_ROWS:
        weight = ext.gguf_dequantize(w, qtype, x.shape[1], True)
        return torch.nn.functional.linear(x, weight, None if bias is None else bias.float())
    return ext.gguf_gemm(x, w, qtype, bias, True)


def gguf_dequantize(w: torch.Tensor, qtype: int) -> torch.Tensor:
    """float32 [N, K] from blocks; the twin is ref.gguf_dequantize."""
    ext = gguf_extension()
    if ext is None:
        return ref.gguf_dequantize(w, qtype)
    return ext.gguf_dequantize(w, qtype, ref.row_weights(w, qtype), True)
