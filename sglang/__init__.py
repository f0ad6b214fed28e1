"""SGLang: a structured-generation language for LLM programs and a fast serving runtime.

Heavy modules (torch, the runtime) are imported lazily on first attribute access, so that
`import sglang as sgl` stays cheap for frontend-only users.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = "sglang.lang.api"
_LAZY = {
    "Engine": "sglang.runtime.entrypoints.engine:Engine",
    "ServerArgs": "sglang.runtime.server_args:ServerArgs",
    # Frontend language.
    **{name: f"{_API}:{name}" for name in (
        "function", "gen", "order_independent", "gen_int", "gen_string", "select", "image", "video",
        "system", "user", "assistant", "system_begin", "system_end", "user_begin", "user_end",
        "assistant_begin", "assistant_end", "flush_cache", "get_server_info")},
    "set_default_backend": "sglang.lang.global_config:set_default_backend",
    "global_config": "sglang.lang.global_config:global_config",
    "SglFunction": "sglang.lang.function:SglFunction",
    "ProgramState": "sglang.lang.interpreter.program_state:ProgramState",
    "ProgramError": "sglang.lang.interpreter.stream_log:ProgramError",
    **{name: f"sglang.lang.choices:{name}" for name in (
        "token_length_normalized", "greedy_token_selection",
        "unconditional_likelihood_normalized")},
    # Backends.
    "Runtime": "sglang.lang.backend.runtime:Runtime",
    "RuntimeEndpoint": "sglang.lang.backend.runtime_endpoint:RuntimeEndpoint",
    "EngineBackend": "sglang.lang.backend.engine_backend:EngineBackend",
    "OpenAI": "sglang.lang.backend.openai_backend:OpenAI",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sglang' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
