"""A JSON-schema string `pattern` made safe to place between the quotes of a JSON string.

The pattern describes the decoded string, but the regex is matched against the raw JSON text,
where '"', '\\' and control characters must be escaped. Common patterns admit them only through
"anything but" constructs (`[^,]+`, `.*`, `\\S+`); those are narrowed to exclude the unsafe
characters, which keeps every match valid JSON with the same decoded value. A pattern that still
admits an unsafe character (it names one explicitly) is rejected with a message.
"""

from __future__ import annotations

import re

_UNSAFE_CLASS_BODY = r'"\\\x00-\x1f'  # appended to negated classes
_NEGATED_SHORTHANDS = {"S": r"\s", "W": r"\w", "D": "0-9"}
_UNSAFE_CHARS = '"\\' + "".join(chr(c) for c in range(0x20))


def _strip_anchors(pattern: str) -> str:
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    return body


def _class_end(pattern: str, start: int) -> int:
    """Index of the ']' closing the class opened at `start` (a leading ']' is a member)."""
    i = start + 1
    i += 1 if pattern.startswith("^", i) else 0
    i += 1 if pattern.startswith("]", i) else 0
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i


def _narrow(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1:i + 2] in _NEGATED_SHORTHANDS:
            out.append(f"[^{_NEGATED_SHORTHANDS[pattern[i + 1]]}{_UNSAFE_CLASS_BODY}]")
            i += 2
        elif ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        elif ch == "[":
            end = _class_end(pattern, i)
            body = pattern[i:end]
            out.append(body + _UNSAFE_CLASS_BODY + "]" if body.startswith("[^") else body + "]")
            i = end + 1
        elif ch == ".":
            out.append(f"[^{_UNSAFE_CLASS_BODY}]")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def json_string_content(pattern: str) -> str:
    """Regex for the raw text between the quotes, for a schema `pattern` (full match, anchors dropped)."""
    from sglang.runtime.constrained.char_fsm import CharFSM

    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"string pattern {pattern!r} is not a valid regex: {exc}") from None
    narrowed = _narrow(_strip_anchors(pattern))
    fsm = CharFSM(narrowed)
    for state in fsm.states():
        for ch in _UNSAFE_CHARS:
            if fsm.step(state, ch) >= 0:
                raise ValueError(
                    f"string pattern {pattern!r} admits the character {ch!r}, which a JSON string must "
                    f"escape; the fsm backend cannot translate that (remove it from the pattern or use "
                    f"--grammar-backend xgrammar)"
                )
    return f"({narrowed})"
