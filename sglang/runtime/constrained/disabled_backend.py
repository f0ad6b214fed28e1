"""The "none" grammar backend: constrained decoding turned off; every grammar is refused."""

from __future__ import annotations

from typing import NoReturn

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend


class DisabledGrammarBackend(BaseGrammarBackend):
    name = "none"

    def _compile(self, kind: str, spec: str) -> NoReturn:
        raise ValueError(
            f"this server runs with --grammar-backend none, so {kind} constraints are unavailable; "
            f"restart it with --grammar-backend xgrammar (or fsm)"
        )
