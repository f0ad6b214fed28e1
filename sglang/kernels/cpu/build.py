"""Compile-once loading of the C++ CPU kernels.

`torch.utils.cpp_extension.load` builds the sources of this folder into one Python module under
TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions), keyed by the source's hash, so only the
first process after a change pays the compile (about a minute on two cores); concurrent processes
wait on its lock. The build needs a C++ compiler and ninja; without them, or on a failed build,
`load_cpu_extension` returns None and logs why, once per process.

One module (`cpu_kernels`: every .cpp here, bound in bindings.cpp), so the kernels share one
build and one cache entry.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
from types import ModuleType
from typing import Optional

logger = logging.getLogger(__name__)

_SOURCES_DIR = os.path.dirname(os.path.abspath(__file__))
# -ffp-contract=off: dequantization must round like the reference (multiply, then add), so the
# compiler may not fuse those into one FMA. OpenMP: torch's intra-op thread pool (at::parallel_for).
_CFLAGS = ["-O3", "-fopenmp", "-ffp-contract=off"]


@functools.lru_cache(maxsize=None)
def load_cpu_extension(name: str = "cpu_kernels") -> Optional[ModuleType]:
    """The compiled kernels module, or None (reason logged). `name` selects the module, i.e. the
    sources: "cpu_kernels" is every .cpp in this folder; another name builds `<name>.cpp` alone."""
    if os.environ.get("SGLANG_DISABLE_CPU_KERNELS") == "1":
        logger.info("C++ CPU kernels (%s) not used: SGLANG_DISABLE_CPU_KERNELS=1", name)
        return None
    sources = sorted(glob.glob(os.path.join(_SOURCES_DIR, "*.cpp"))) if name == "cpu_kernels" else [
        os.path.join(_SOURCES_DIR, f"{name}.cpp")]
    try:
        from torch.utils import cpp_extension

        return cpp_extension.load(name=f"sglang_{name}", sources=sources, extra_cflags=_CFLAGS,
                                  extra_ldflags=["-fopenmp"], extra_include_paths=[_SOURCES_DIR], verbose=False)
    except Exception as exc:  # no compiler, no ninja, a failed build: all mean "run without it"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning("C++ CPU kernels (%s) unavailable (%s: %s); falling back to the torch path", name,
                       type(exc).__name__, first_line)
        return None
