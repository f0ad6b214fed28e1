"""Shared fixtures: the tiny llama tokenizer, one backend of each kind, compiled-grammar cache."""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import pytest
from transformers import AutoTokenizer

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend, BaseGrammarObject
from sglang.runtime.constrained.registry import create_backend
from sglang.runtime.constrained.vocab_bytes import token_bytes_table
from sglang.testing.fixtures import tiny_model_dir
from tests.constrained.walk import Vocab

# Wider than the tokenizer (1000 tokens), as model embedding tables often are: ids >= 1000 must
# never be allowed.
MODEL_VOCAB = 1024


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_model_dir("llama"))


@pytest.fixture(scope="session")
def eos_ids(tokenizer) -> frozenset:
    # <|eot_id|> and <|end_of_text|>, like the llama family's generation config
    return frozenset(tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"]))


@pytest.fixture(scope="session")
def vocab(tokenizer, eos_ids) -> Vocab:
    return Vocab(tokenizer, MODEL_VOCAB, token_bytes_table(tokenizer), eos_ids)


@pytest.fixture(scope="session")
def backends(tokenizer, eos_ids) -> Dict[str, BaseGrammarBackend]:
    return {name: create_backend(name, tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids) for name in ("fsm", "xgrammar", "lark")}


@pytest.fixture(scope="session")
def compiled(backends) -> Callable[[str, str, str], BaseGrammarObject]:
    """compiled(backend, kind, spec) -> a fresh grammar object; each spec compiles once a session."""
    cache: Dict[Tuple[str, str, str], BaseGrammarObject] = {}

    def get(backend: str, kind: str, spec: str) -> BaseGrammarObject:
        key = (backend, kind, spec)
        if key not in cache:
            cache[key] = backends[backend].compile(kind, spec)
        return cache[key].copy()

    return get
