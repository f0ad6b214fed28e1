"""A JSON-schema constraint (response_format) that applies after a reasoning model's thinking:
the thinking block is free text, the answer after it follows the schema."""

from __future__ import annotations

import json

from sglang.runtime.constrained.grammar_limits import check_schema_counts
from sglang.runtime.constrained.json_schema_regex import load_schema
from sglang.runtime.constrained.string_formats import with_format_patterns
from sglang.runtime.function_call.grammar import ebnf_literal, rename_root
from sglang.runtime.reasoning.parser import ReasoningParser

# Thinking text: anything but the start of the closing tag (a "</" inside the thinking ends it).
_THINK_TEXT = 'think_text ::= ([^<] | "<" [^/])*'


def schema_after_reasoning_ebnf(parser: ReasoningParser, schema: str) -> str:
    """EBNF of: the thinking block (opened by the prompt for `forced` parsers, optional
    otherwise), then a JSON value of `schema` (compact, as our JSON constraints are)."""
    import xgrammar as xgr

    checked = with_format_patterns(load_schema(schema))  # the json_schema constraint's own checks
    check_schema_counts(checked)
    answer = str(xgr.Grammar.from_json_schema(json.dumps(checked), any_whitespace=False))
    body = rename_root(answer, "answer")
    block = f'think_text {ebnf_literal(parser.end)} [ \\n]*'
    if parser.forced:
        root = f"root ::= ({ebnf_literal(parser.start)})? {block} answer"
    else:
        root = f'root ::= ({ebnf_literal(parser.start)} {block})? answer'
    return f"{body}\n{_THINK_TEXT}\n{root}\n"
