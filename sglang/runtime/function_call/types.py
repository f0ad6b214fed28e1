"""Values passed between the call parsers, the streamer and the OpenAI layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class PartialCall:
    """One call as far as it has been generated. `arguments` is the JSON text of the arguments
    so far; every later scan of a longer output extends it (never rewrites it)."""

    name: Optional[str] = None
    arguments: str = ""
    done: bool = False


@dataclass
class Scan:
    """What a format makes of (partial or complete) output text: the content outside the call
    markup and the calls. For partial text, content stops before anything that may still turn out
    to be markup."""

    content: str = ""
    calls: List[PartialCall] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCall:
    """A complete call, as the OpenAI layer returns it (arguments: a JSON object's text)."""

    name: str
    arguments: str


@dataclass(frozen=True)
class CallLayout:
    """How a family writes calls, for building a grammar that only produces well-formed calls.

    A call to `name` is `call_prefix(name) + <arguments JSON> + call_suffix`; several calls are
    `begin + call (separator call)* + end`. `trigger` is the text that opens call markup in free
    text (the grammar constrains everything after it in `auto` mode); None when a family's calls
    cannot be told from text by a fixed opening string. `reply_start`: calls are recognised only at
    the start of the reply (llama3: a reply opening with `{`), so `auto` constrains a reply that
    starts with the call's first character.
    """

    begin: str
    end: str
    separator: str
    prefix_template: str  # with {name}
    call_suffix: str
    trigger: Optional[str] = None
    reply_start: bool = False

    def call_prefix(self, name: str) -> str:
        return self.prefix_template.format(name=name)
