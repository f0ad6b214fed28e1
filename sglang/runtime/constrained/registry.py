"""Grammar backends by name (`--grammar-backend`), imported only when chosen.

Lazy imports keep xgrammar (a compiled extension) out of processes that never constrain output.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple, Type

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend

# name -> (module, class); a constant table, never mutated
GRAMMAR_BACKENDS: Dict[str, Tuple[str, str]] = {
    "xgrammar": ("sglang.runtime.constrained.xgrammar_backend", "XGrammarBackend"),
    "fsm": ("sglang.runtime.constrained.fsm_backend", "FSMGrammarBackend"),
    "lark": ("sglang.runtime.constrained.lark_backend", "LarkGrammarBackend"),
    "none": ("sglang.runtime.constrained.disabled_backend", "DisabledGrammarBackend"),
}


def backend_class(name: str) -> Type[BaseGrammarBackend]:
    if name not in GRAMMAR_BACKENDS:
        raise ValueError(f"unknown grammar backend {name!r}; choose one of: {', '.join(GRAMMAR_BACKENDS)}")
    module_name, class_name = GRAMMAR_BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"grammar backend {name!r} cannot be loaded ({exc}); install its dependency or pick another "
            f"--grammar-backend"
        ) from exc
    return getattr(module, class_name)


def create_backend(name: str, tokenizer: Any, vocab_size: int, **options: Any) -> BaseGrammarBackend:
    return backend_class(name)(tokenizer, vocab_size, **options)
