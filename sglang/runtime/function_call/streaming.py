"""Streamed output -> OpenAI deltas: content text and `delta.tool_calls` entries (index, id and
name once, then argument fragments), by diffing successive scans of the growing output."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import AbstractSet, List, Optional, Tuple

from sglang.runtime.function_call.base import ToolCallFormat


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCallDelta:
    index: int
    arguments: str
    id: Optional[str] = None  # with the name, on a call's first delta only
    name: Optional[str] = None


@dataclass
class _SentCall:
    id: str
    arguments: int = 0  # characters of arguments sent


class StreamingToolParser:
    def __init__(self, fmt: ToolCallFormat, names: AbstractSet[str]):
        self._fmt = fmt
        self._names = names
        self._content_sent = 0
        self._calls: List[_SentCall] = []

    @property
    def has_calls(self) -> bool:
        return bool(self._calls)

    def feed(self, text: str, final: bool = False) -> Tuple[str, List[ToolCallDelta]]:
        """The content delta and call deltas for the whole output so far, `text`."""
        scan = self._fmt.scan(text, self._names, final)
        content = scan.content[self._content_sent:]
        self._content_sent = max(self._content_sent, len(scan.content))
        deltas = []
        for index, call in enumerate(scan.calls):
            if call.name is None:
                break
            if index == len(self._calls):
                self._calls.append(_SentCall(new_call_id()))
                sent = self._calls[index]
                deltas.append(ToolCallDelta(index, call.arguments, sent.id, call.name))
            else:
                sent = self._calls[index]
                fragment = call.arguments[sent.arguments:]
                if fragment:
                    deltas.append(ToolCallDelta(index, fragment))
            sent.arguments = max(sent.arguments, len(call.arguments))
        return content, deltas
