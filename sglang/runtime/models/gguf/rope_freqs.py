"""Llama 3 rope scaling recovered from llama.cpp's `rope_freqs` tensor.

llama.cpp's converter does not store Llama 3.1's scaling parameters; it writes the per-frequency
divisors they produce (1 for short wavelengths, `factor` for long ones, a blend between) as the
tensor `rope_freqs.weight`. That curve depends on `factor` and on the line
smooth(1/wavelength) = slope / wavelength + intercept of the blend, so those are fitted from the
blended entries, turned back into (factor, low_freq_factor, high_freq_factor,
original_max_position_embeddings) with low_freq_factor = 1, and checked by recomputing the
divisors with the runtime's own Llama 3 formula.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from sglang.runtime.layers.rotary_embedding import default_inv_freq, llama3_inv_freq

ROPE_FREQS = "rope_freqs.weight"
_REL_TOL = 1e-3  # the file stores float32 divisors


def _fail(reason: str) -> ValueError:
    return ValueError(f"GGUF tensor {ROPE_FREQS!r} does not describe Llama 3 rope scaling ({reason}); "
                      f"this rope variant is not supported")


def llama3_scaling_from_divisors(divisors: np.ndarray, base: float, rotary_dim: int) -> Optional[Dict[str, Any]]:
    """HF `rope_scaling` for these per-frequency divisors, or None when they are all 1."""
    divisors = np.asarray(divisors, dtype=np.float64).reshape(-1)
    if divisors.shape[0] != rotary_dim // 2:
        raise _fail(f"{divisors.shape[0]} entries for a rotary width of {rotary_dim}")
    factor = float(divisors.max())
    if np.allclose(divisors, 1.0, rtol=_REL_TOL, atol=0):
        return None
    inv_freq = default_inv_freq(rotary_dim, base).double().numpy()
    blended = (divisors > 1 + _REL_TOL) & (divisors < factor * (1 - _REL_TOL))
    if blended.sum() < 2:
        raise _fail("fewer than two blended frequencies to fit")
    smooth = (1 / divisors[blended] - 1 / factor) / (1 - 1 / factor)
    slope, intercept = np.polyfit(inv_freq[blended] / (2 * math.pi), smooth, 1)
    if not (slope > 0 and intercept < 0):
        raise _fail("the blend does not fall from long to short wavelengths")
    scaling = {"rope_type": "llama3", "factor": _simplest(factor), "low_freq_factor": 1.0,
               "high_freq_factor": _simplest(1 - 1 / intercept),
               "original_max_position_embeddings": _simplest(-slope / intercept)}
    _check(divisors, scaling, base, rotary_dim)
    return scaling


def _simplest(x: float) -> float:
    """The shortest decimal within float32 noise of a fitted `x` (published configs use round
    numbers: 8.0, 4.0, 8192), an int when whole."""
    for digits in range(1, 8):
        candidate = float(f"{x:.{digits}g}")
        if abs(candidate - x) <= 1e-4 * abs(x):
            return int(candidate) if candidate.is_integer() else candidate
    return float(x)


def _check(divisors: np.ndarray, scaling: Dict[str, Any], base: float, rotary_dim: int) -> None:
    plain = default_inv_freq(rotary_dim, base).double()
    scaled = llama3_inv_freq(rotary_dim, base, scaling).double()
    recomputed = (plain / scaled).numpy()
    if not np.allclose(recomputed, divisors, rtol=_REL_TOL, atol=0):
        worst = float(np.max(np.abs(recomputed / divisors - 1)))
        raise _fail(f"refitted divisors differ by up to {worst:.2e}")


def rope_divisors(ckpt: Any) -> Optional[np.ndarray]:
    """The float divisors of `rope_freqs.weight`, or None when the file has none."""
    if not ckpt.has_tensor(ROPE_FREQS):
        return None
    from gguf.quants import dequantize

    record = ckpt.tensor(ROPE_FREQS)
    return np.asarray(dequantize(record.data, record.tensor_type), dtype=np.float32).reshape(-1)
