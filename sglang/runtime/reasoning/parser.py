"""<think>...</think> splitting of (partial or complete) output into reasoning and content.

Like the tool-call scans, a scan of growing text only grows: reasoning and content extend what
a scan of a prefix returned (text that may still be a tag is held back), so streams send exact
deltas. Two conventions exist: models whose template opens the thinking block in the prompt
(DeepSeek-R1: output starts inside it, `forced`) and models that write <think> themselves
(Qwen3: output is reasoning only when it starts with <think>).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from sglang.runtime.function_call.json_scan import safe_end


@dataclass(frozen=True)
class ReasoningParser:
    name: str
    forced: bool  # the output starts inside the reasoning block
    start: str = "<think>"
    end: str = "</think>"

    def split(self, text: str, final: bool) -> Tuple[str, str]:
        """(reasoning, content) of `text`."""
        head = text.lstrip()
        if head.startswith(self.start):
            body = head[len(self.start):]
        elif not final and self.start.startswith(head):
            return "", ""  # may still become <think>
        elif self.forced:
            body = text
        else:
            return "", text
        at = body.find(self.end)
        if at >= 0:
            return body[:at].strip(), body[at + len(self.end):].lstrip()
        if final:
            return body.strip(), ""
        return body[:safe_end(body, (self.end,))].lstrip(), ""


class ReasoningStream:
    """Deltas of reasoning and content for a growing output."""

    def __init__(self, parser: ReasoningParser):
        self._parser = parser
        self._sent = [0, 0]

    def feed(self, text: str, final: bool = False) -> Tuple[str, str, str]:
        """(reasoning delta, content delta, content so far)."""
        reasoning, content = self._parser.split(text, final)
        deltas = reasoning[self._sent[0]:], content[self._sent[1]:]
        self._sent = [max(self._sent[0], len(reasoning)), max(self._sent[1], len(content))]
        return deltas[0], deltas[1], content
