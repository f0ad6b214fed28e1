"""Hermes (NousResearch) calls: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>,
one block per call, anywhere in the reply."""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Dict, Sequence

from sglang.runtime.function_call.base import Region, ToolCallFormat, scan_regions
from sglang.runtime.function_call.json_scan import COMPLETE, INVALID, PARTIAL, call_object, expect, skip_ws
from sglang.runtime.function_call.types import CallLayout, Scan

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesFormat(ToolCallFormat):
    name = "hermes"
    family = "hermes"
    markers = (OPEN,)
    template_markers = (OPEN,)

    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        return scan_regions(text, final, self.markers, lambda t, pos, _m: _block(t, pos, names))

    def layout(self) -> CallLayout:
        return CallLayout(begin="", end="", separator="\n",
                          prefix_template=OPEN + '\n{{"name": "{name}", "arguments": ',
                          call_suffix="}\n" + CLOSE, trigger=OPEN)

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
                f"{listing}\n</tools>\n\nFor each function call, return a json object with function name and "
                "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def _block(text: str, pos: int, names: AbstractSet[str]) -> Region:
    found = call_object(text, pos, names)
    if found.status != COMPLETE:
        return Region(found.status, [found.call] if found.call is not None and found.call.name else [])
    close = skip_ws(text, found.end)
    status = expect(text, close, CLOSE)
    if status == INVALID:  # a complete call without its closing tag is still the model's call
        return Region(COMPLETE, [found.call], found.end)
    if status == PARTIAL:
        return Region(PARTIAL, [found.call])
    return Region(COMPLETE, [found.call], close + len(CLOSE))
