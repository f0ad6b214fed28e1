"""What the CPU comparison ran on: CPU model and vector extensions, load, and memory bandwidth
measured in the same run (a decode step at small batch reads every weight once, so bandwidth is
the yardstick for its time)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Dict, List

_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16",
                      "amx_int8", "amx_tile")


def cpu_description() -> Dict[str, object]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in _FLAGS_OF_INTEREST if f in flags],
            "load_average_1m": round(os.getloadavg()[0], 2)}


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_bandwidth(threads: int, mib: int = 256, repeats: int = 9) -> Dict[str, float]:
    """GB/s of a large tensor copy (bytes read + bytes written) and of a sum (bytes read), on
    `threads` torch threads, over buffers well beyond the last-level cache."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = mib * (1 << 20) // 4
        src, dst = torch.ones(n), torch.empty(n)
        copy_s = _median_seconds(lambda: dst.copy_(src), repeats)
        read_s = _median_seconds(lambda: src.sum(), repeats)
    finally:
        torch.set_num_threads(previous)
    nbytes = n * 4
    return {"copy_GBps_read_plus_write": round(2 * nbytes / copy_s / 1e9, 2),
            "read_GBps_sum": round(nbytes / read_s / 1e9, 2), "buffer_MiB": mib, "threads": threads}
