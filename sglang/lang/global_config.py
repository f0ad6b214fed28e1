"""The process-wide default backend (`sgl.set_default_backend`), the frontend's only global."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from sglang.lang.backend.base_backend import BaseBackend


@dataclass
class GlobalConfig:
    default_backend: Optional[BaseBackend] = None
    # Interpreter: prefill a fork's shared prefix before the children run (off only to measure).
    enable_fork_prefix_hint: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


global_config = GlobalConfig()


def as_backend(backend: Any) -> BaseBackend:
    """Accept a backend, an `sgl.Runtime` (its endpoint) or an `sglang.Engine` (wrapped)."""
    if isinstance(backend, BaseBackend):
        return backend
    endpoint = getattr(backend, "endpoint", None)
    if isinstance(endpoint, BaseBackend):
        return endpoint
    from sglang.runtime.entrypoints.engine import Engine  # lazy: torch only when needed

    if isinstance(backend, Engine):
        from sglang.lang.backend.engine_backend import EngineBackend
        return EngineBackend(engine=backend)
    raise TypeError(f"not a backend: {type(backend).__name__}; use sgl.Runtime, "
                    f"sgl.RuntimeEndpoint, sgl.OpenAI or sgl.Engine")


def set_default_backend(backend: Any) -> None:
    with global_config.lock:
        global_config.default_backend = as_backend(backend)


def resolve_backend(backend: Optional[Any]) -> BaseBackend:
    if backend is not None:
        return as_backend(backend)
    with global_config.lock:
        if global_config.default_backend is None:
            raise RuntimeError("no backend: call sgl.set_default_backend(...) or pass backend= "
                               "(sgl.Runtime, sgl.RuntimeEndpoint, sgl.OpenAI)")
        return global_config.default_backend
