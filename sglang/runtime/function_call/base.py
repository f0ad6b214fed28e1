"""What a tool-call format provides, and the scan loop most formats share.

A format scans model output (partial while streaming, complete at the end) into content and calls.
Scans of growing text only grow: content and each call's arguments extend what an earlier scan
of a prefix returned, which is what lets `streaming.py` send exact deltas. Markup that can no
longer become a well-formed call is content, so bad model output never fails a request.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import AbstractSet, Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from sglang.runtime.function_call.json_scan import COMPLETE, INVALID, PARTIAL, safe_end
from sglang.runtime.function_call.types import CallLayout, PartialCall, Scan, ToolCall


@dataclass
class Region:
    """A run of call markup found at some position: its calls and where it ends (if complete)."""

    status: str
    calls: List[PartialCall] = field(default_factory=list)
    end: int = 0


class ToolCallFormat(ABC):
    name: ClassVar[str]
    family: ClassVar[str]  # formats of one family write calls identically (hermes, qwen25)
    markers: ClassVar[Tuple[str, ...]] = ()  # strings that open call markup in free text
    template_markers: ClassVar[Tuple[str, ...]] = ()  # chat-template text that identifies the family

    @abstractmethod
    def scan(self, text: str, names: AbstractSet[str], final: bool) -> Scan:
        """Content and calls of `text`; `final` once the output is complete."""

    def layout(self) -> Optional[CallLayout]:
        """The call layout for constrained generation; None when calls are not JSON-bodied."""
        return None

    def calls_grammar(self, tools: Sequence[Dict[str, Any]], parallel: bool) -> Optional[str]:
        """EBNF of a reply made only of calls, for formats without a JSON-bodied layout (whose
        grammar grammar.calls_ebnf builds from the layout); None when it cannot be constrained."""
        return None

    def auto_grammar(self, tools: Sequence[Dict[str, Any]], parallel: bool) -> Optional[str]:
        """EBNF of a `tool_choice=auto` reply (free text, constrained once a call starts) for
        formats without a JSON-bodied layout; None when calls stay parsed only."""
        return None

    def parse(self, text: str, names: AbstractSet[str] = frozenset()) -> Tuple[str, List[ToolCall]]:
        scan = self.scan(text, names, final=True)
        return scan.content, [ToolCall(c.name, c.arguments) for c in scan.calls if c.name is not None]

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        """Calls written as the model writes them (history for templates that ignore tool_calls)."""
        layout = self.layout()
        assert layout is not None, f"{self.name} must override render_calls"
        bodies = [layout.call_prefix(c.name) + c.arguments + layout.call_suffix for c in calls]
        return layout.begin + layout.separator.join(bodies) + layout.end

    def system_prompt(self, tools: Sequence[Dict[str, Any]]) -> str:
        """Tools described in the family's system-prompt style (for templates that ignore tools)."""
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        example = self.render_calls([ToolCall("<function-name>", '{"<argument>": "<value>"}')])
        return (f"You may call functions. Available functions, as JSON schemas:\n{listing}\n"
                f"To call a function, reply with:\n{example}")


def scan_regions(text: str, final: bool, markers: Sequence[str], region_at: Any) -> Scan:
    """Content with call regions cut out. `region_at(text, pos_after_marker, marker)` reads one
    region. A region still being generated ends the scan (PARTIAL); at the end of the output a
    region that never completed, or any INVALID one, stays in the content as text."""
    content, calls, pos, after_markup = "", [], 0, False
    while True:
        hit = _first_marker(text, pos, markers)
        if hit is None:
            tail = text[pos:].lstrip() if after_markup else text[pos:]
            content += tail if final else tail[:safe_end(tail, markers)]
            return Scan(content, calls)
        at, marker = hit
        segment = text[pos:at].lstrip() if after_markup else text[pos:at]
        region = region_at(text, at + len(marker), marker)
        if region.status == INVALID or (final and region.status == PARTIAL):
            content += segment + marker
            pos, after_markup = at + len(marker), False
            continue
        content = (content + segment).rstrip()
        calls.extend(region.calls)
        if region.status == PARTIAL:
            return Scan(content, calls)
        assert region.status == COMPLETE
        pos, after_markup = region.end, True


def _first_marker(text: str, pos: int, markers: Sequence[str]) -> Optional[Tuple[int, str]]:
    hits = [(text.find(m, pos), m) for m in markers]
    hits = [h for h in hits if h[0] >= 0]
    return min(hits) if hits else None
