"""Whether text is a prefix of some valid JSON value: tells a streamed value that is still being
generated (wait for more) from one that can never parse (treat the markup as content)."""

from __future__ import annotations

import re
from typing import List

_WS = " \t\n\r"
_HEX = set("0123456789abcdefABCDEF")
_ESCAPES = set('"\\/bfnrt')
_NUMBER_RUN = re.compile(r"[-+0-9.eE]*")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][+-]?[0-9]*)?")
_LITERALS = ("true", "false", "null")


def is_json_prefix(text: str, pos: int = 0) -> bool:
    """True when text[pos:] can be extended into one complete JSON value (or already is one)."""
    stack: List[str] = []
    state = "value"  # value | value_or_close | key | key_or_close | colon | after | string | key_string
    i, n = pos, len(text)
    while i < n:
        c = text[i]
        if state in ("string", "key_string"):
            step = _string_step(text, i)
            if step < 0:
                return False
            if step == 0:
                return True
            if c == '"':
                state = "colon" if state == "key_string" else "after"
            i += step
            continue
        if c in _WS:
            i += 1
            continue
        if state in ("value", "value_or_close"):
            if c in "-0123456789":
                run = _NUMBER_RUN.match(text, i).end()
                if run == n:
                    return _NUMBER_PREFIX.fullmatch(text, i, run) is not None
                if _NUMBER.fullmatch(text, i, run) is None:
                    return False
                i, state = run, "after"
                continue
            if c in "tfn":
                word = next(w for w in _LITERALS if w[0] == c)
                seg = text[i:i + len(word)]
                if seg != word:
                    return i + len(seg) == n and word.startswith(seg)
                i, state = i + len(word), "after"
                continue
            if c == "]" and state == "value_or_close":
                stack.pop()
                state = "after"
            elif c in "{[":
                stack.append(c)
                state = "key_or_close" if c == "{" else "value_or_close"
            elif c == '"':
                state = "string"
            else:
                return False
        elif state in ("key", "key_or_close"):
            if c == '"':
                state = "key_string"
            elif c == "}" and state == "key_or_close":
                stack.pop()
                state = "after"
            else:
                return False
        elif state == "colon":
            if c != ":":
                return False
            state = "value"
        else:  # after a value
            if not stack:
                return False
            if c == ",":
                state = "key" if stack[-1] == "{" else "value"
            elif c == {"{": "}", "[": "]"}[stack[-1]]:
                stack.pop()
            else:
                return False
        i += 1
    return True


def _string_step(text: str, i: int) -> int:
    """Characters consumed at text[i] inside a string: >0 a step, 0 the text ends mid-escape,
    -1 invalid."""
    c = text[i]
    if c == "\\":
        if i + 1 >= len(text):
            return 0
        esc = text[i + 1]
        if esc == "u":
            digits = text[i + 2:i + 6]
            if not all(d in _HEX for d in digits):
                return -1
            return 6 if len(digits) == 4 else 0
        return 2 if esc in _ESCAPES else -1
    return -1 if ord(c) < 0x20 else 1
