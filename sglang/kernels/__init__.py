"""GPU fast-path kernels, each with a plain-torch twin of the same signature.

Layout: `sglang.kernels.<name>` holds the Triton version (imports triton, CUDA tensors only);
`sglang.kernels.ref.<name>` holds its torch twin, which runs on any device (the CPU path uses it)
and is the reference the Triton version is tested against. `sampling` is torch-only on purpose:
it is sync-free device code already, and a Triton version would not move it off the critical path.
"""

from __future__ import annotations

import importlib.util

import torch


def triton_available() -> bool:
    """True when the `triton` package is importable (it does not say whether a GPU is present)."""
    return importlib.util.find_spec("triton") is not None


def use_triton(t: torch.Tensor) -> bool:
    """Whether a kernel on tensor `t` should take the Triton path rather than the torch twin."""
    return t.is_cuda and triton_available()
