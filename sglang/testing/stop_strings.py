"""Stop strings that straddle a token boundary, derived from a model's own output.

A stop string that fits inside one token is found by checking only the newest token's text; one
that starts inside a token and ends inside the next is not. Tests therefore pick it from a
greedy output instead of hoping a hand-written string happens to straddle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List


@dataclass(frozen=True)
class StraddlingStop:
    stop: str  # the stop string
    completing_token: int  # index in the output ids of the token whose text completes it
    text_before: str  # the output text up to the stop string (what a trimmed result shows)


def _decode(tokenizer: Any, ids: List[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)  # as the runtime decodes by default


def straddling_stop(tokenizer: Any, output_ids: List[int]) -> StraddlingStop:
    """The first stop string made of the last character of one token's text and the first of the
    next token's text, where both texts are longer than that (so the string starts inside one
    token and ends inside the next), and that appears nowhere earlier in the output. Raises if the
    output offers none."""
    full = _decode(tokenizer, output_ids)
    for k in range(1, len(output_ids)):
        head = _decode(tokenizer, output_ids[:k])
        left = _decode(tokenizer, output_ids[k - 1 : k])
        right = _decode(tokenizer, output_ids[k : k + 1])
        b = len(head)
        if len(left) < 2 or len(right) < 2 or not head.endswith(left) or not full.startswith(right, b):
            continue  # a token too short to straddle, or a boundary inside a multi-byte character
        stop = full[b - 1 : b + 1]
        if "\ufffd" in stop or not stop.strip() or full.find(stop) != b - 1:
            continue
        return StraddlingStop(stop, k, full[: b - 1])
    raise ValueError(f"no stop string straddles a token boundary in {full!r}")
