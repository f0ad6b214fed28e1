"""Scanning helpers shared by the formats: JSON call objects in partial text, marker prefixes.

Every helper distinguishes three outcomes, because streamed text is scanned again and again as it
grows: COMPLETE (the thing is whole), PARTIAL (the text ends inside it: wait), INVALID (it can no
longer become well-formed: the format treats the markup as plain content).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import AbstractSet, Optional, Sequence

from sglang.runtime.function_call.json_prefix import is_json_prefix
from sglang.runtime.function_call.types import PartialCall

COMPLETE, PARTIAL, INVALID = "complete", "partial", "invalid"
_DECODER = json.JSONDecoder()
# {"name": "<name>", "arguments": — the head of a call object written name first (as every
# family's documentation and our grammar write it); "parameters" is Llama 3's spelling.
_HEAD = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


@dataclass
class Found:
    status: str
    call: Optional[PartialCall] = None
    end: int = 0  # index just past the thing when COMPLETE


def safe_end(text: str, markers: Sequence[str]) -> int:
    """Length of the prefix of `text` that can be shown as content now: trailing whitespace and
    any tail that may be the start of a marker are held back."""
    end = len(text)
    for marker in markers:
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:k]):
                end = min(end, len(text) - k)
                break
    return len(text[:end].rstrip())


def skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def expect(text: str, pos: int, literal: str) -> str:
    """COMPLETE when `literal` is at `pos`, PARTIAL when the text ends inside it, else INVALID."""
    rest = text[pos:pos + len(literal)]
    if rest == literal:
        return COMPLETE
    return PARTIAL if literal.startswith(rest) else INVALID


def json_object_end(text: str, pos: int) -> Found:
    """A JSON object starting at `pos`: COMPLETE with its end, PARTIAL while it may still close."""
    if pos >= len(text):
        return Found(PARTIAL)
    if text[pos] != "{":
        return Found(INVALID)
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError:
        return Found(PARTIAL if is_json_prefix(text, pos) else INVALID)
    return Found(COMPLETE if isinstance(value, dict) else INVALID, end=end)


def call_object(text: str, pos: int, names: AbstractSet[str]) -> Found:
    """A `{"name": ..., "arguments": {...}}` object at `pos` (after whitespace). The call's
    arguments grow as raw text, so streamed fragments are exact prefixes of the final text."""
    pos = skip_ws(text, pos)
    head = _HEAD.match(text, pos)
    if head is None:
        return _unordered_object(text, pos, names)
    name = _json_string(head.group(1))
    if name is None or (names and name not in names):
        return Found(INVALID)
    args_at = head.end()
    args = json_object_end(text, args_at)
    if args.status != COMPLETE:
        partial = PartialCall(name, text[args_at:] if args.status == PARTIAL else "")
        return Found(args.status, partial)
    call = PartialCall(name, text[args_at:args.end])
    close = skip_ws(text, args.end)
    status = expect(text, close, "}")
    if status == INVALID:
        return _unordered_object(text, pos, names)
    if status == PARTIAL:
        return Found(PARTIAL, call)
    call.done = True
    return Found(COMPLETE, call, close + 1)


def _unordered_object(text: str, pos: int, names: AbstractSet[str]) -> Found:
    """An object whose keys are not name-first: only usable once complete."""
    obj = json_object_end(text, pos)
    if obj.status != COMPLETE:
        return Found(obj.status)
    value = json.loads(text[pos:obj.end])
    name = value.get("name")
    args = value.get("arguments", value.get("parameters"))
    if isinstance(args, str):
        args = _json_object_or_none(args)
    if not isinstance(name, str) or (names and name not in names) or not isinstance(args, dict):
        return Found(INVALID)
    return Found(COMPLETE, PartialCall(name, json.dumps(args, ensure_ascii=False), True), obj.end)


def _json_string(body: str) -> Optional[str]:
    try:
        return json.loads(f'"{body}"')
    except json.JSONDecodeError:
        return None


def _json_object_or_none(text: str) -> Optional[dict]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
