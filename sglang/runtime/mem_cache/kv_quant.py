"""FP8 KV cache (`--kv-cache-dtype fp8_e4m3|fp8_e5m2`): one byte per K/V element, half of bf16's.

Values are stored as value / scale rounded to FP8 (saturating at the format's largest finite
value rather than overflowing to NaN) and read back as fp8 * scale. Each layer has one K and one V
scale (1.0 unless a checkpoint supplies calibrated ones), so reading a cache slot needs nothing
but its bytes. e4m3 keeps 3 mantissa bits up to 448; e5m2 keeps 2 bits up to 57344.
"""

from __future__ import annotations

from typing import Dict

import torch

FP8_KV_DTYPES: Dict[str, torch.dtype] = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
KV_CACHE_DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16", *FP8_KV_DTYPES)


def resolve_kv_cache_dtype(name: str, model_dtype: torch.dtype) -> torch.dtype:
    """--kv-cache-dtype NAME -> the pool's storage dtype ('auto': the model's)."""
    if name == "auto":
        return model_dtype
    if name in FP8_KV_DTYPES:
        return FP8_KV_DTYPES[name]
    if name not in KV_CACHE_DTYPE_NAMES:
        raise ValueError(f"kv_cache_dtype must be one of {KV_CACHE_DTYPE_NAMES}, got {name!r}")
    return getattr(torch, name)


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_KV_DTYPES.values()


def quantize_kv(x: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    limit = torch.finfo(dtype).max
    x = x.float() if scale == 1.0 else x.float() / scale
    return x.clamp(-limit, limit).to(dtype)


def dequantize_kv(x: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Stored values (any dtype) -> `dtype`; FP8 ones times their scale."""
    if not is_fp8(x.dtype) or scale == 1.0:
        return x.to(dtype)
    return (x.float() * scale).to(dtype)
