"""Pieces shared by the Triton attention kernels: tile-size choice and argument checks."""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl


def next_pow2(n: int, minimum: int = 16) -> int:
    """Triton tiles are powers of two and tl.dot needs every dim >= 16; masks cover the excess."""
    return max(minimum, triton.next_power_of_2(n))


def gqa_group(num_heads: int, num_kv_heads: int) -> int:
    if num_heads % num_kv_heads:
        raise ValueError(f"num q heads ({num_heads}) must be a multiple of num kv heads ({num_kv_heads})")
    return num_heads // num_kv_heads


# "No window" is passed as a window longer than any sequence, so kernels test one condition
# with no branch (a runtime branch may not change a mask's shape inside a Triton kernel).
NO_WINDOW = 1 << 30


def window_arg(sliding_window: Optional[int]) -> int:
    """The window as kernels take it: the number of most recent positions a query sees."""
    if sliding_window is not None and sliding_window < 0:
        raise ValueError(f"sliding_window must be positive or None, got {sliding_window}")
    return int(sliding_window) if sliding_window else NO_WINDOW


def check_last_dim_contiguous(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last dim (got strides {t.stride()}); call .contiguous()")


@triton.jit
def soft_cap(s, logit_cap):
    """logit_cap * tanh(s / logit_cap), with tanh written through sigmoid (portable across Triton versions)."""
    return logit_cap * (2.0 * tl.sigmoid(2.0 * s / logit_cap) - 1.0)
