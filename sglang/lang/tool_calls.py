"""Tool calls in frontend programs: a grammar for `sgl.gen(..., ebnf=...)` that makes the model
write calls to the given tools in a family's format, and the parse of the generated text.

    import sglang as sgl
    from sglang.lang.tool_calls import parse_tool_calls, tool_call_ebnf

    s += sgl.gen("call", ebnf=tool_call_ebnf(tools, "hermes"), max_tokens=200)
    calls = parse_tool_calls(s["call"], tools, "hermes")  # [ToolCall(name, arguments JSON)]

`tools` are OpenAI tool dicts ({"type": "function", "function": {...}}) or bare function dicts
(name, parameters). The runtime must use the xgrammar grammar backend.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from sglang.runtime.function_call.grammar import calls_ebnf
from sglang.runtime.function_call.registry import get_format
from sglang.runtime.function_call.types import ToolCall


def _functions(tools: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for tool in tools:
        fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError(f"a tool must be a function dict with a name (or an OpenAI tool dict), got {tool!r}")
        out.append({"name": fn["name"], "parameters": fn.get("parameters") or {"type": "object"},
                    **({"strict": fn["strict"]} if "strict" in fn else {})})
    if not out:
        raise ValueError("tool_call_ebnf needs at least one tool")
    return out


def tool_call_ebnf(tools: Sequence[Dict[str, Any]], parser: str = "hermes", parallel: bool = False) -> str:
    """EBNF of a reply that is only calls (one, or up to 4 with `parallel`) to `tools`, written in
    the `parser` family's format, with arguments valid against each tool's schema."""
    fmt = get_format(parser)
    functions = _functions(tools)
    layout = fmt.layout()
    ebnf = calls_ebnf(layout, functions, parallel) if layout is not None else fmt.calls_grammar(functions, parallel)
    if ebnf is None:
        raise ValueError(f"tool calls of the {parser} format cannot be constrained")
    return ebnf


def parse_tool_calls(text: str, tools: Sequence[Dict[str, Any]], parser: str = "hermes") -> List[ToolCall]:
    """The calls in generated `text` (arguments as JSON text); [] when it holds none."""
    names = frozenset(f["name"] for f in _functions(tools))
    return get_format(parser).parse(text, names)[1]
