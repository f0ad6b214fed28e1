"""The CPU path's small-op kernels: switches a model's layers (and the torch_native attention
backend) onto the C++ kernels of `sglang/kernels/cpu/decode_ops.cpp`.

A CPU decode step of a small model is dominated by per-op overhead, not arithmetic: a Llama layer
ran about 65 torch ops (RMSNorm alone is 8, rotary + KV write about 20, the decode attention's
gather/mask/SDPA about 10). With the kernels a layer is nine calls: norm, qkv, rotary + KV write,
attention, o, add + norm, gate_up, SiLU-mul, down.

Where every layer of a Llama-style model qualifies, decode steps also skip the modules and call
the kernels directly (`cpu_decode_step.py`).

On by default on CPU (`--disable-cpu-kernels` turns it off). Each layer keeps its torch path for
what the kernels do not cover (other dtypes than float32, Gemma's (1 + w) norms, non-contiguous
inputs) and takes it when the extension cannot be built. The switch is per instance (`cpu_ops`
attributes), so models in the same process are independent.
"""

from __future__ import annotations

import logging
from typing import List

from torch import nn

from sglang.runtime.layers.activation import SiluAndMul
from sglang.runtime.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.runtime.layers.cpu_decode_step import PLAIN_ROTARY, plan_decode_steps
from sglang.runtime.layers.layernorm import RMSNorm

logger = logging.getLogger(__name__)


def apply_cpu_kernels(model: nn.Module, attn_backend: object) -> List[str]:
    """Switch what can take the kernels; returns the kinds switched (empty without the extension)."""
    from sglang.kernels.cpu.build import load_cpu_extension

    ops = load_cpu_extension()
    if ops is None:
        logger.info("CPU kernels unavailable (see above): the layers run torch ops")
        return []
    switched = set()
    for module in model.modules():
        # Exact types: subclasses (Gemma's (1 + w) norm) compute something else.
        if type(module) in (RMSNorm, SiluAndMul, *PLAIN_ROTARY):
            module.cpu_ops = ops
            switched.add(type(module).__name__)
    if isinstance(attn_backend, TorchNativeAttnBackend):
        attn_backend.cpu_ops = ops
        switched.add("decode attention")
    # Vision-language models decode through their language model.
    inner = getattr(getattr(model, "language_model", model), "model", None)
    if hasattr(inner, "cpu_decode_steps") and switched:
        inner.cpu_decode_steps = plan_decode_steps(ops, inner.layers)
        if inner.cpu_decode_steps is not None:
            switched.add("decode steps")
    kinds = sorted(switched)
    logger.info("CPU kernels on for: %s (--disable-cpu-kernels to turn off)", ", ".join(kinds) or "nothing")
    return kinds
