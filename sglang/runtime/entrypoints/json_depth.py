"""How deeply a JSON text nests, measured before it is parsed.

orjson (before 3.9.15) parses nesting recursively without a limit: a 600 KB body of 100,000
nested objects overflows the C stack and the server process dies with SIGSEGV. The depth is
therefore measured on the bytes first, at C speed: most bodies have fewer brackets in total than
the limit and need nothing more; otherwise string literals are cut out (brackets inside them do
not nest) and the depth is the running maximum of opens minus closes, in chunks with numpy.
"""

from __future__ import annotations

import re

import numpy as np

# Far deeper than any request needs (a chat message's content part is 5 levels; a JSON schema
# 30 levels deep is 60), far below what overflows a parser's or serializer's stack.
MAX_JSON_DEPTH = 128

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a complete string literal, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENS = np.zeros(256, dtype=np.int32)
_OPENS[[ord("["), ord("{")]] = 1
_CHUNK = 1 << 22


def exceeds_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data`, read as JSON, nests arrays/objects more than `limit` levels deep. Text that
    is not JSON gives an answer too (the parser then reports the syntax error)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        codes = np.frombuffer(brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start)
        steps = 2 * _OPENS[codes] - 1  # +1 for an open, -1 for a close
        levels = np.cumsum(steps, dtype=np.int64) + depth
        if int(levels.max()) > limit:
            return True
        depth = int(levels[-1])
    return False
