"""One server (sgl.Runtime) and one in-process engine for all frontend tests of this package.

Starting either costs 10-40 s on a small CPU box, so they are shared; tests must leave them
usable (no shutdown, no global flags left changed).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from sglang.lang.backend.engine_backend import EngineBackend
from sglang.lang.backend.runtime import Runtime
from sglang.testing.fixtures import tiny_model_dir

# Small KV pools: a server and an engine run side by side on a small CPU box.
RUNTIME_ARGS = dict(device="cpu", random_seed=0, max_total_tokens=8192)


@pytest.fixture(scope="package")
def model_path() -> str:
    return tiny_model_dir("llama")


@pytest.fixture(scope="package")
def runtime(model_path: str) -> Iterator[Runtime]:
    rt = Runtime(model_path=model_path, **RUNTIME_ARGS)
    yield rt
    rt.shutdown()


@pytest.fixture(scope="package")
def engine_backend(model_path: str) -> Iterator[EngineBackend]:
    backend = EngineBackend(model_path=model_path, **RUNTIME_ARGS)
    yield backend
    backend.shutdown()


@pytest.fixture(scope="package")
def trained_runtime() -> Iterator[Runtime]:
    """A server on the trained tiny checkpoint (predictable text: records, Q/A, reviews)."""
    from sglang.testing.fixtures import trained_model_dir

    rt = Runtime(model_path=trained_model_dir(), **RUNTIME_ARGS)
    yield rt
    rt.shutdown()
