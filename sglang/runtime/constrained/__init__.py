"""Structured generation: grammar backends (xgrammar; our regex FSM), jump-forward helpers.

The scheduler needs only what is exported here; backends are imported lazily by name.
"""

from sglang.runtime.constrained.base_grammar import GRAMMAR_KINDS, BaseGrammarBackend, BaseGrammarObject
from sglang.runtime.constrained.batch_mask import build_allowed_token_mask
from sglang.runtime.constrained.grammar_manager import GrammarManager, grammar_kind_of
from sglang.runtime.constrained.jump_forward import jump_forward_retokenize
from sglang.runtime.constrained.registry import GRAMMAR_BACKENDS, create_backend

__all__ = [
    "GRAMMAR_BACKENDS",
    "GRAMMAR_KINDS",
    "BaseGrammarBackend",
    "BaseGrammarObject",
    "GrammarManager",
    "build_allowed_token_mask",
    "create_backend",
    "grammar_kind_of",
    "jump_forward_retokenize",
]
