"""Pythonic calls (Llama 3.2 / Llama 4 style): the reply is a Python list of calls with keyword
arguments, `[get_weather(city="Paris"), get_time()]`. Arguments are Python literals (JSON's
true/false/null are accepted too) and are returned as a JSON object."""

from __future__ import annotations

import ast
import json
import re
from typing import AbstractSet, Any, Dict, List, Optional, Sequence

from sglang.runtime.function_call.base import ToolCallFormat
from sglang.runtime.function_call.pythonic_grammar import pythonic_auto_ebnf, pythonic_calls_ebnf
from sglang.runtime.function_call.types import PartialCall, Scan, ToolCall

_OPENING = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
_JSON_NAMES = {"true": True, "false": False, "null": None}
_CUT_TRIES = 4  # closing parentheses tried, from the end, when looking for the calls complete so far


class PythonicFormat(ToolCallFormat):
    name = "pythonic"
    family = "pythonic"
    template_markers = ("[func_name1(",)

    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        body = text.strip()
        if not _OPENING.match(body):
            if not final and _may_open(body):
                return Scan("", [])
            return Scan(text, [])
        calls = _parse_list(body, names)
        if calls is not None:
            return Scan("", calls)
        if final:
            return Scan(text, [])
        return Scan("", _complete_so_far(body, names))

    def calls_grammar(self, tools: Sequence[Dict[str, Any]], parallel: bool) -> Optional[str]:
        return pythonic_calls_ebnf(tools, parallel)

    def auto_grammar(self, tools: Sequence[Dict[str, Any]], parallel: bool) -> Optional[str]:
        return pythonic_auto_ebnf(tools, parallel)

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        def one(call: ToolCall) -> str:
            args = json.loads(call.arguments)
            return f"{call.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
        return "[" + ", ".join(one(c) for c in calls) + "]"

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        return ("You may call functions. Available functions, as JSON schemas:\n"
                f"{listing}\n\nTo call functions, reply only with a Python list of calls, "
                "[func_name1(params_name1=params_value1, params_name2=params_value2), func_name2(params)]")


def _may_open(body: str) -> bool:
    """Whether `body` may still grow into the opening of a call list."""
    return body == "" or body == "[" or re.fullmatch(r"\[\s*[A-Za-z_][\w.]*\s*", body) is not None \
        or re.fullmatch(r"\[\s*", body) is not None


def _complete_so_far(body: str, names: AbstractSet[str]) -> List[PartialCall]:
    cuts = [i for i, c in enumerate(body) if c == ")"][-_CUT_TRIES:]
    for cut in reversed(cuts):
        calls = _parse_list(body[:cut + 1] + "]", names)
        if calls is not None:
            return calls
    return []


def _parse_list(source: str, names: AbstractSet[str]) -> Optional[List[PartialCall]]:
    try:
        tree = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    calls = []
    for node in tree.elts:
        call = _call(node, names)
        if call is None:
            return None
        calls.append(call)
    return calls


def _call(node: ast.AST, names: AbstractSet[str]) -> Optional[PartialCall]:
    if not isinstance(node, ast.Call) or node.args:
        return None
    name = ast.unparse(node.func)
    if names and name not in names:
        return None
    try:
        args = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    except (ValueError, TypeError, SyntaxError):
        return None
    if len(args) != len(node.keywords):
        return None
    return PartialCall(name, json.dumps(args, ensure_ascii=False), True)


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)
