"""Mistral calls: [TOOL_CALLS] followed by a JSON array of {"name": ..., "arguments": {...}}."""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Dict, List, Sequence

from sglang.runtime.function_call.base import Region, ToolCallFormat, scan_regions
from sglang.runtime.function_call.json_scan import COMPLETE, INVALID, PARTIAL, call_object, skip_ws
from sglang.runtime.function_call.types import CallLayout, PartialCall, Scan

MARKER = "[TOOL_CALLS]"


class MistralFormat(ToolCallFormat):
    name = "mistral"
    family = "mistral"
    markers = (MARKER,)
    template_markers = (MARKER, "[AVAILABLE_TOOLS]")

    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        return scan_regions(text, final, self.markers, lambda t, pos, _m: _array(t, pos, names))

    def layout(self) -> CallLayout:
        return CallLayout(begin=MARKER + " [", end="]", separator=", ",
                          prefix_template='{{"name": "{name}", "arguments": ', call_suffix="}", trigger=MARKER)

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        listing = json.dumps(tools, ensure_ascii=False)
        return (f"[AVAILABLE_TOOLS] {listing}[/AVAILABLE_TOOLS]\nTo call tools, reply with {MARKER} and a JSON "
                'array of calls: [{"name": "<function-name>", "arguments": {...}}]')


def _array(text: str, pos: int, names: AbstractSet[str]) -> Region:
    pos = skip_ws(text, pos)
    if pos == len(text):
        return Region(PARTIAL)
    if text[pos] != "[":
        return Region(INVALID)
    calls: List[PartialCall] = []
    pos += 1
    while True:
        found = call_object(text, pos, names)
        if found.status == INVALID:
            return Region(INVALID)
        if found.status == PARTIAL:
            return Region(PARTIAL, calls + ([found.call] if found.call is not None else []))
        calls.append(found.call)
        pos = skip_ws(text, found.end)
        if pos == len(text):
            return Region(PARTIAL, calls)
        if text[pos] == "]":
            return Region(COMPLETE, calls, pos + 1)
        if text[pos] != ",":
            return Region(INVALID)
        pos += 1
