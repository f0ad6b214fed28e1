"""SGLang: a structured-generation language for LLM programs and a fast serving runtime.

Heavy modules (torch, the runtime) are imported lazily on first attribute access, so that
`import sglang as sgl` stays cheap for frontend-only users.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Engine": "sglang.runtime.entrypoints.engine:Engine",
    "ServerArgs": "sglang.runtime.server_args:ServerArgs",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sglang' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
