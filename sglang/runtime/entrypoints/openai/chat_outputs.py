"""Model text -> the assistant message: reasoning split off (--reasoning-parser), tool calls parsed
out of the rest (tools in the request), whole for responses and as deltas for streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from sglang.runtime.entrypoints.openai.protocol import ChatMessageOut, DeltaMessage, FunctionCallOut, ToolCallOut
from sglang.runtime.entrypoints.openai.tool_request import ToolPlan
from sglang.runtime.function_call.streaming import StreamingToolParser, ToolCallDelta, new_call_id
from sglang.runtime.reasoning.parser import ReasoningParser, ReasoningStream

TOOL_CALLS_FINISH = "tool_calls"


@dataclass
class OutputParsers:
    tools: Optional[ToolPlan] = None
    reasoning: Optional[ReasoningParser] = None

    @property
    def active(self) -> bool:
        return self.tools is not None or self.reasoning is not None

    @property
    def calls_only(self) -> bool:
        """The grammar allows nothing but calls: text outside them (a call cut off by max_tokens)
        is not content."""
        return self.tools is not None and self.tools.grammar is not None and self.tools.choice != "auto"

    def message(self, text: str) -> Tuple[ChatMessageOut, bool]:
        """The message of a complete output, and whether it calls tools."""
        reasoning, content = self.reasoning.split(text, final=True) if self.reasoning else ("", text)
        calls: List[ToolCallOut] = []
        if self.tools is not None:
            content, found = self.tools.fmt.parse(content, self.tools.names)
            if not self.tools.parallel:
                found = found[:1]
            calls = [ToolCallOut(id=new_call_id(), type="function",
                                 function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in found]
            content = "" if self.calls_only else content
        message = ChatMessageOut(content=content if content or not calls else None,
                                 reasoning_content=reasoning or None, tool_calls=calls or None)
        return message, bool(calls)


def finish_reason(reason: Optional[str], has_calls: bool) -> Optional[str]:
    """OpenAI's "tool_calls" for a reply that ended (rather than ran out of tokens) with calls."""
    return TOOL_CALLS_FINISH if has_calls and reason == "stop" else reason


class ChoiceStream:
    """One choice's deltas: reasoning, content with call markup held back, call fragments."""

    def __init__(self, parsers: OutputParsers):
        self._reasoning = ReasoningStream(parsers.reasoning) if parsers.reasoning else None
        plan = parsers.tools
        self._tools = StreamingToolParser(plan.fmt, plan.names) if plan is not None else None
        self._single = plan is not None and not plan.parallel
        self._calls_only = parsers.calls_only
        self._content_sent = 0

    @property
    def has_calls(self) -> bool:
        return self._tools is not None and self._tools.has_calls

    def feed(self, text: str, final: bool) -> Optional[DeltaMessage]:
        reasoning = ""
        if self._reasoning is not None:
            reasoning, _, content = self._reasoning.feed(text, final)
        else:
            content = text
        calls: List[ToolCallDelta] = []
        if self._tools is not None:
            content_delta, calls = self._tools.feed(content, final)
            calls = [c for c in calls if not self._single or c.index == 0]
            content_delta = "" if self._calls_only else content_delta
        else:
            content_delta = content[self._content_sent:]
            self._content_sent = max(self._content_sent, len(content))
        if not (reasoning or content_delta or calls):
            return None
        tool_calls = [ToolCallOut(index=c.index, id=c.id, type="function" if c.id else None,
                                  function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in calls]
        return DeltaMessage(content=content_delta or None, reasoning_content=reasoning or None,
                            tool_calls=tool_calls or None)
