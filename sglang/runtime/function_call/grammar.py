"""Grammars that make the model write well-formed calls: the family's call layout around each
tool's JSON-schema arguments, as xgrammar EBNF (our default grammar backend).

- `required` / a named function: the whole reply is one call (or, with parallel calls, one or
  more), so the arguments always parse and validate against the tool's schema.
- `auto`: free text, until the family's opening marker (the trigger) appears; from there the
  call is constrained (xgrammar's TagDispatch, the mechanism of its structural tags). llama3 has
  no marker (its <|python_tag|> is a special token, which constrained decoding never emits): a
  reply that opens with `{` is a call list and is constrained whole; other replies are free text.
Argument JSON is compact (", " and ": " separators, no other whitespace), as our JSON
constraints are by default: a sampled model cannot wander off into whitespace.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence

from sglang.runtime.function_call.types import CallLayout

# Most calls in one constrained reply: a sampled model may otherwise keep choosing "one more call"
# until it runs out of tokens, leaving a cut-off call.
MAX_PARALLEL_CALLS = 4
_ROOT_RULE = re.compile(r"^root ::= ", re.MULTILINE)
_ROOT_REF = re.compile(r"\broot\b")


def ebnf_literal(text: str) -> str:
    """`text` as an EBNF string literal (JSON string escapes are valid xgrammar escapes)."""
    return json.dumps(text, ensure_ascii=False)


def calls_ebnf(layout: CallLayout, tools: Sequence[Dict[str, Any]], parallel: bool) -> str:
    """A reply that is nothing but calls to `tools` (function dicts: name, parameters)."""
    body = rename_root(_calls_union(layout, tools, ""), "tool_call")
    more = f"({ebnf_literal(layout.separator)} tool_call){{0, {MAX_PARALLEL_CALLS - 1}}}" if parallel else ""
    return (body + f"\nroot ::= {ebnf_literal(layout.begin)} tool_call {more} {ebnf_literal(layout.end)}\n")


def triggered_ebnf(layout: CallLayout, tools: Sequence[Dict[str, Any]], parallel: bool) -> Optional[str]:
    """Free text in which call markup, once its opening marker (the trigger) appears, is
    well-formed to its end; None for families without a fixed opening marker."""
    trigger = layout.trigger
    if not trigger:
        return _reply_start_ebnf(layout, tools, parallel) if layout.reply_start else None
    more = f"({ebnf_literal(layout.separator)} tool_call)*" if parallel else ""
    if layout.begin:  # one marker opens a whole list of calls (mistral, deepseekv3)
        if not layout.begin.startswith(trigger):
            return None
        body = rename_root(_calls_union(layout, tools, ""), "tool_call")
        body += (f"\ntool_call_rest ::= {ebnf_literal(layout.begin[len(trigger):])} tool_call {more} "
                 f"{ebnf_literal(layout.end)}")
    else:  # the marker opens each call (hermes)
        body = rename_root(_calls_union(layout, tools, trigger), "tool_call_rest")
    return (body + f"\nroot ::= TagDispatch(({ebnf_literal(trigger)}, tool_call_rest), "
                   f"loop_after_dispatch={'true' if parallel else 'false'}, excludes=())\n")


def _reply_start_ebnf(layout: CallLayout, tools: Sequence[Dict[str, Any]], parallel: bool) -> str:
    """Free text, or (after leading whitespace) calls when the reply opens with the first character
    of a call: text may not start with that character, so such a reply is constrained whole."""
    body = rename_root(_calls_union(layout, tools, ""), "tool_call")
    first = layout.call_prefix(tools[0]["name"])[:1] if tools else ""
    if not first or any(not layout.call_prefix(t["name"]).startswith(first) for t in tools):
        raise ValueError("calls of this family do not share a first character")
    more = f"({ebnf_literal(layout.separator)} tool_call)*" if parallel else ""
    not_first = "[^" + first.replace("\\", "\\\\").replace("]", "\\]") + " \\t\\n\\r]"
    return (body + f"\nreply_text ::= \"\" | {not_first} [^]*"
                   f"\nroot ::= [ \\t\\n\\r]* ({ebnf_literal(layout.begin)} tool_call {more} "
                   f"{ebnf_literal(layout.end)} | reply_text)\n")


def _calls_union(layout: CallLayout, tools: Sequence[Dict[str, Any]], consumed: str) -> str:
    """One call to any of `tools`, less `consumed` (the trigger) at its start."""
    import xgrammar as xgr

    from sglang.runtime.constrained.xgrammar_backend import narrow_string_chars

    alternatives = []
    for tool in tools:
        prefix = layout.call_prefix(tool["name"])
        assert prefix.startswith(consumed)
        prefix = prefix[len(consumed):]
        schema = tool.get("parameters") or {"type": "object"}
        args = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False,
                                            strict_mode=bool(tool.get("strict", True)))
        alternatives.append(xgr.Grammar.concat(_literal_grammar(xgr, prefix), args,
                                               _literal_grammar(xgr, layout.call_suffix)))
    grammar = alternatives[0] if len(alternatives) == 1 else xgr.Grammar.union(*alternatives)
    # Narrowed as the backend narrows json_schema constraints (no raw controls, no surrogates).
    return narrow_string_chars(str(grammar))


def _literal_grammar(xgr: Any, text: str) -> Any:
    return xgr.Grammar.from_ebnf(f"root ::= {ebnf_literal(text)}" if text else 'root ::= ""')


def rename_root(ebnf: str, name: str) -> str:
    """xgrammar's print names its start rule `root`; give it `name` so a new root can wrap it."""
    lines: List[str] = ebnf.strip().splitlines()
    if any(_ROOT_REF.search(line) for line in lines if not line.startswith("root ::= ")):
        raise ValueError("tool schemas refer back to the grammar root; cannot wrap them")
    return _ROOT_RULE.sub(f"{name} ::= ", "\n".join(lines))
