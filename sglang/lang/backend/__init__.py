"""Frontend backends, imported lazily: `from sglang.lang.backend import RuntimeEndpoint` loads
only that backend's module (the OpenAI one needs `openai`, the engine one needs torch)."""

from __future__ import annotations

import importlib
from typing import Any

# Registry: short name → "module:Class".
BACKENDS: dict[str, str] = {
    "runtime_endpoint": "sglang.lang.backend.runtime_endpoint:RuntimeEndpoint",
    "engine": "sglang.lang.backend.engine_backend:EngineBackend",
    "runtime": "sglang.lang.backend.runtime:Runtime",
    "openai": "sglang.lang.backend.openai_backend:OpenAI",
}

# Attribute name → "module:attribute" for `from sglang.lang.backend import X`.
_LAZY: dict[str, str] = {
    "BaseBackend": "sglang.lang.backend.base_backend:BaseBackend",
    "GenResult": "sglang.lang.backend.base_backend:GenResult",
    "Prompt": "sglang.lang.backend.base_backend:Prompt",
    "RuntimeEndpoint": BACKENDS["runtime_endpoint"],
    "EngineBackend": BACKENDS["engine"],
    "Runtime": BACKENDS["runtime"],
    "OpenAI": BACKENDS["openai"],
    "RuntimeBackendError": "sglang.lang.backend.runtime_protocol:RuntimeBackendError",
}


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def get_backend_class(name: str) -> type:
    """The backend class registered under `name` (e.g. "runtime_endpoint", "openai")."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return _load(BACKENDS[name])


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sglang.lang.backend' has no attribute {name!r}")
    return _load(target)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
