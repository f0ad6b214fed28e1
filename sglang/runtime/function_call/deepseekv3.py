"""DeepSeek V3 calls: <｜tool▁calls▁begin｜>, then per call <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
and the arguments in a ```json fence, closed by <｜tool▁call▁end｜>; <｜tool▁calls▁end｜> at the end."""

from __future__ import annotations

import json
from typing import AbstractSet, Any, Dict, List, Sequence

from sglang.runtime.function_call.base import Region, ToolCallFormat, scan_regions
from sglang.runtime.function_call.json_scan import (
    COMPLETE,
    INVALID,
    PARTIAL,
    expect,
    json_object_end,
    skip_ws,
)
from sglang.runtime.function_call.types import CallLayout, PartialCall, Scan

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
FENCE_OPEN, FENCE_CLOSE = "\n```json\n", "\n```"


class DeepSeekV3Format(ToolCallFormat):
    name = "deepseekv3"
    family = "deepseekv3"
    markers = (CALLS_BEGIN,)
    template_markers = (CALLS_BEGIN,)

    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        return scan_regions(text, final, self.markers, lambda t, pos, _m: _calls(t, pos, names))

    def layout(self) -> CallLayout:
        return CallLayout(begin=CALLS_BEGIN, end=CALLS_END, separator="",
                          prefix_template=CALL_BEGIN + "function" + SEP + "{name}" + FENCE_OPEN,
                          call_suffix=FENCE_CLOSE + CALL_END, trigger=CALLS_BEGIN)

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        return (f"## Tools\nYou have access to the following functions:\n{listing}\n\nTo call functions, reply "
                f"with {CALLS_BEGIN}{CALL_BEGIN}function{SEP}<name>{FENCE_OPEN}<arguments JSON>"
                f"{FENCE_CLOSE}{CALL_END}{CALLS_END}")


def _calls(text: str, pos: int, names: AbstractSet[str]) -> Region:
    calls: List[PartialCall] = []
    while True:
        pos = skip_ws(text, pos)
        for literal, then in ((CALLS_END, None), (CALL_BEGIN, "call")):
            status = expect(text, pos, literal)
            if status == COMPLETE and then is None:
                return Region(COMPLETE, calls, pos + len(literal))
            if status == COMPLETE:
                break
            if status == PARTIAL:
                return Region(PARTIAL, calls)
        else:
            return Region(INVALID)
        region, call, pos = _one_call(text, pos + len(CALL_BEGIN), names)
        if call is not None:
            calls.append(call)
        if region != COMPLETE:
            return Region(region, calls)


def _one_call(text: str, pos: int, names: AbstractSet[str]):
    """(status, call or None, position after the call)."""
    head = "function" + SEP
    status = expect(text, pos, head)
    if status != COMPLETE:
        return status, None, pos
    pos += len(head)
    newline = text.find("\n", pos)
    if newline < 0:
        return PARTIAL, None, pos
    name = text[pos:newline].strip()
    if not name or (names and name not in names):
        return INVALID, None, pos
    status = expect(text, newline, FENCE_OPEN)
    if status != COMPLETE:
        return status, None, pos
    args_at = newline + len(FENCE_OPEN)
    args = json_object_end(text, args_at)
    if args.status != COMPLETE:
        partial = PartialCall(name, text[args_at:]) if args.status == PARTIAL else None
        return args.status, partial, pos
    call = PartialCall(name, text[args_at:args.end])
    tail = args.end
    for literal in (FENCE_CLOSE, CALL_END):
        status = expect(text, tail, literal)
        if status != COMPLETE:
            return status, call, pos
        tail += len(literal)
    call.done = True
    return COMPLETE, call, tail
