"""RMSNorm variants, optionally fused with the residual add that precedes them.

`forward(x)` returns the normalised x. `forward(x, residual)` first adds x to the residual stream
and returns (normalised sum, new residual), which is how decoder layers chain norms without an
extra pass over the activations.

On CUDA (with Triton) both forms run our kernels (`sglang.kernels.rmsnorm`): statistics and the
scale in float32 with one rounding at the end. The fused form works in place there (x becomes
the normalised sum, residual the sum), so callers must not reuse the tensors they pass in; the
decoder layers never do. On CPU, a float32 Llama-style norm runs the C++ kernel when the CPU path
switched it on (`layers/cpu_kernels.py`; the residual is updated in place there too). Elsewhere
the plain-torch `*_ref` functions below run unchanged.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from sglang.kernels import use_triton

NormOut = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama-style: normalise in float32, cast back, then scale by `weight` in x's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def gemma_rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma-style: scale by (1 + weight), all in float32, cast back only at the end."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * (1.0 + weight.float())).to(x.dtype)


def fused_add_rms_norm_ref(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rms_norm(x + residual), x + residual): the twin of a fused add+norm kernel."""
    residual = x + residual
    return rms_norm_ref(residual, weight, eps), residual


def _cpu_kernel_fits(x: torch.Tensor, residual: Optional[torch.Tensor]) -> bool:
    ok = x.dtype == torch.float32 and x.dim() == 2 and x.is_contiguous()
    return ok and (residual is None or (residual.dtype == torch.float32 and residual.is_contiguous()))


class RMSNorm(nn.Module):
    # The C++ CPU kernels module, set by `cpu_kernels.apply_cpu_kernels` (None: torch ops).
    cpu_ops = None
    # Value that makes the norm an identity scaling (used by dummy weight init).
    identity_weight: float = 1.0
    # Whether the kernel scales by (1 + weight) (Gemma) instead of weight.
    kernel_gemma: bool = False

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((hidden_size,), self.identity_weight))
        self.variance_epsilon = eps

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm_ref(x, self.weight, self.variance_epsilon)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> NormOut:
        if use_triton(x):
            return self._forward_triton(x, residual)
        if self.cpu_ops is not None and _cpu_kernel_fits(x, residual):
            if residual is None:
                return self.cpu_ops.rms_norm(x, None, self.weight, self.variance_epsilon, True)
            return self.cpu_ops.rms_norm(x, residual, self.weight, self.variance_epsilon, True), residual
        if residual is None:
            return self._norm(x)
        residual = x + residual  # kept separate from the norm so GemmaRMSNorm reuses it
        return self._norm(residual), residual

    def _forward_triton(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> NormOut:
        from sglang.kernels import rmsnorm as kernels

        eps, gemma = self.variance_epsilon, self.kernel_gemma
        if residual is None:
            return kernels.rmsnorm(x.contiguous(), self.weight, eps, gemma=gemma)
        # In place on (contiguous copies of) the inputs: one read and one write of each.
        return kernels.fused_add_rmsnorm(x.contiguous(), residual.contiguous(), self.weight, eps, gemma=gemma)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"


class GemmaRMSNorm(RMSNorm):
    identity_weight = 0.0  # (1 + w) scaling: zero weights are the identity
    kernel_gemma = True

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return gemma_rms_norm_ref(x, self.weight, self.variance_epsilon)
