"""The "lark" grammar backend: EBNF (GBNF dialect) on a character-level LALR(1) parser built by lark.

EBNF is translated by ebnf_to_lark (a grammar in Lark's own syntax is first turned into EBNF by
lark_syntax), lark builds (and checks) the LALR table, and lark_grammar
drives it over the vocabulary trie. A grammar that is not LALR(1) is refused with lark's
description of the conflict. Regexes and JSON schemas are delegated to the fsm backend, which is
regular-language machinery over the same trie.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Optional, Tuple

import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend, BaseGrammarObject
from sglang.runtime.constrained.ebnf_to_lark import to_lark_charwise
from sglang.runtime.constrained.fsm_backend import FSMGrammarBackend
from sglang.runtime.constrained.lalr_driver import LALRDriver, build_table
from sglang.runtime.constrained.lark_grammar import CompiledCFG, LarkGrammar
from sglang.runtime.constrained.lark_syntax import lark_to_ebnf
from sglang.runtime.constrained.lark_token_index import VocabChars
from sglang.runtime.constrained.vocab_trie import VocabTrie


class LarkGrammarBackend(BaseGrammarBackend):
    """Options: eos_token_ids, cache_size (compiled grammars kept); others go to the fsm backend."""

    name = "lark"
    kinds = ("regex", "json", "ebnf", "lark")

    def __init__(self, tokenizer: Any, vocab_size: int, **options: Any):
        super().__init__(tokenizer, vocab_size, **options)
        self._token_bytes = self.vocab_bytes()
        self._trie = VocabTrie(self._token_bytes)
        self._chars = VocabChars(self._token_bytes)
        self._eos_ids = torch.tensor(self.eos_token_ids, dtype=torch.int64)
        self._cache_size = int(self.options.get("cache_size", 32))
        self._compiled: "OrderedDict[Tuple[str, str], CompiledCFG]" = OrderedDict()
        self._fsm: Optional[FSMGrammarBackend] = None
        self._lock = threading.Lock()

    def _compile(self, kind: str, spec: str) -> BaseGrammarObject:
        if kind not in ("ebnf", "lark"):
            return self._fsm_backend().compile(kind, spec)
        key = (kind, spec)
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is not None:
                self._compiled.move_to_end(key)
                return LarkGrammar(compiled)
        lark_text, cells = to_lark_charwise(lark_to_ebnf(spec) if kind == "lark" else spec)
        driver = LALRDriver(build_table(lark_text, cells), cells)
        compiled = CompiledCFG(driver, self._trie, self._token_bytes, self._eos_ids, self._chars)
        compiled.allowed((driver.start, b""))  # first mask here, off the scheduler thread
        with self._lock:
            compiled = self._compiled.setdefault(key, compiled)
            while len(self._compiled) > self._cache_size:
                self._compiled.popitem(last=False)
        return LarkGrammar(compiled)

    def _fsm_backend(self) -> FSMGrammarBackend:
        with self._lock:
            if self._fsm is None:
                opts = {k: v for k, v in self.options.items() if k != "cache_size"}
                self._fsm = FSMGrammarBackend(self.tokenizer, self.vocab_size,
                                              eos_token_ids=self.eos_token_ids, **opts)
            return self._fsm
