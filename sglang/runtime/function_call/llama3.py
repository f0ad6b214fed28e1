"""Llama 3.1/3.2 JSON calls: the reply is `{"name": ..., "parameters": {...}}` (optionally after
<|python_tag|>), several calls separated by ';'. Llama 3 has no closing tag: a call is a reply
that starts with the JSON object (or the python tag)."""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Dict, List, Sequence

from sglang.runtime.function_call.base import Region, ToolCallFormat, scan_regions
from sglang.runtime.function_call.json_scan import COMPLETE, INVALID, PARTIAL, call_object, skip_ws
from sglang.runtime.function_call.types import CallLayout, PartialCall, Scan

PYTHON_TAG = "<|python_tag|>"
SEPARATOR = ";"


class Llama3Format(ToolCallFormat):
    name = "llama3"
    family = "llama3"
    markers = (PYTHON_TAG,)
    template_markers = (PYTHON_TAG, "ipython")

    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        start = skip_ws(text, 0)
        if not text.startswith(PYTHON_TAG, start) and (start == len(text) or text[start] == "{"):
            # A reply opening with '{' is a call (or content, once it cannot be one).
            region = _calls(text, start, names)
            if region.status == COMPLETE or (region.status == PARTIAL and not final):
                tail = text[region.end:].strip() if region.status == COMPLETE else ""
                return Scan(tail, region.calls)
        return scan_regions(text, final, self.markers, lambda t, pos, _m: _calls(t, pos, names))

    def layout(self) -> CallLayout:
        return CallLayout(begin="", end="", separator=SEPARATOR + " ",
                          prefix_template='{{"name": "{name}", "parameters": ', call_suffix="}", trigger=None,
                          reply_start=True)

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        listing = "\n\n".join(json.dumps(t, ensure_ascii=False, indent=4) for t in tools)
        return ("Given the following functions, please respond with a JSON for a function call with its proper "
                "arguments that best answers the given prompt.\n\nRespond in the format "
                '{"name": function name, "parameters": dictionary of argument name and its value}. '
                f"Do not use variables.\n\n{listing}")


def _calls(text: str, pos: int, names: AbstractSet[str]) -> Region:
    calls: List[PartialCall] = []
    while True:
        found = call_object(text, pos, names)
        if found.status == INVALID:
            return Region(INVALID)
        if found.status == PARTIAL:
            return Region(PARTIAL, calls + ([found.call] if found.call is not None else []))
        calls.append(found.call)
        after = skip_ws(text, found.end)
        if after == len(text) or text[after] != SEPARATOR:
            return Region(COMPLETE, calls, found.end)
        pos = after + 1
