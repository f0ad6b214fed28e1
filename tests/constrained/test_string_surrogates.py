"""Strings under the xgrammar backend never take the UTF-8 form of a surrogate (ED A0..BF xx):
xgrammar admits it, but it is not valid UTF-8 and decodes to three U+FFFD, which made a sampled
tool-call argument outgrow its maxLength (the bench's rare invalid sample). Checked for JSON
schemas (bounded and generic strings), the JSON tool-call grammars and the pythonic one."""

from __future__ import annotations

import json

import pytest
import torch

from sglang.runtime.function_call.grammar import calls_ebnf
from sglang.runtime.function_call.pythonic_grammar import pythonic_calls_ebnf
from sglang.runtime.function_call.registry import get_format

TOOLS = [{"name": "f", "parameters": {"type": "object", "properties": {
    "s": {"type": "string", "maxLength": 8}, "any": {}}, "required": ["s"]}}]
SPECS = {
    "bounded": ("json", json.dumps({"type": "string", "maxLength": 8}), b'"'),
    "generic": ("json", json.dumps({"type": "object", "properties": {"x": {}}, "required": ["x"]}), b'{"x": "'),
    "hermes": ("ebnf", calls_ebnf(get_format("hermes").layout(), TOOLS, parallel=False),
               b'<tool_call>\n{"name": "f", "arguments": {"s": "'),
    "pythonic": ("ebnf", pythonic_calls_ebnf(TOOLS, parallel=False), b'[f(s="'),
}


def _byte_token(vocab, value: bytes) -> int:
    return next(i for i, b in enumerate(vocab.token_bytes) if b == value)


def _feed(grammar, vocab, text: bytes) -> None:
    ids = vocab.tokenizer.encode(text.decode(), add_special_tokens=False)
    assert vocab.token_bytes[ids[0]] is not None
    for tid in ids:
        assert grammar.accept_token(tid), (text, tid)


@pytest.mark.parametrize("name", list(SPECS))
def test_no_surrogate_bytes_inside_strings(name, compiled, vocab):
    kind, spec, opening = SPECS[name]
    grammar = compiled("xgrammar", kind, spec)
    _feed(grammar, vocab, opening)
    assert grammar.accept_token(_byte_token(vocab, b"\xed"))  # ED 80..9F xx is U+D000..U+D7FF: fine
    mask = torch.zeros(vocab.vocab_size, dtype=torch.bool)
    grammar.fill_allowed_mask(mask)
    assert mask[_byte_token(vocab, b"\x9f")]
    assert not mask[_byte_token(vocab, b"\xa0")] and not mask[_byte_token(vocab, b"\xbf")]
