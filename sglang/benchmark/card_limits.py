"""The card's own limits, measured in the same run as a benchmark so figures from different cards
(an H100 and an H200, say) can each be read against their floor.

    python -m sglang.benchmark.card_limits [--out F]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable, Dict

import torch


def _seconds_per_call(fn: Callable[[], object], reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def _fp8_tflops(n: int) -> float:
    """Rate of `torch._scaled_mm` on e4m3 operands (Hopper and Ada only), else 0."""
    if torch.cuda.get_device_capability() < (8, 9):
        return 0.0
    a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()  # column-major second operand
    one = torch.ones((), device="cuda")
    secs = _seconds_per_call(lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), 20)
    return round(2 * n**3 / secs / 1e12, 1)


def card_limits() -> Dict[str, float]:
    """Copy bandwidth (GB/s, device to device: bytes read + written), bf16 and FP8 matmul rates
    (TFLOP/s at 8192^3); empty without CUDA."""
    if not torch.cuda.is_available():
        return {}
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    copy_s = _seconds_per_call(lambda: y.copy_(x), 20)
    mm_s = _seconds_per_call(lambda: a @ a, 20)
    return {"device_name": torch.cuda.get_device_name(), "copy_gbps": round(2 * x.numel() / copy_s / 1e9, 1),
            "bf16_matmul_tflops": round(2 * 8192**3 / mm_s / 1e12, 1), "fp8_matmul_tflops": _fp8_tflops(8192)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    limits = card_limits()
    print(json.dumps(limits, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(limits, f, indent=1)


if __name__ == "__main__":
    main()
