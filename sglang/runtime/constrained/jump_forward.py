"""Jump-forward re-tokenization: append a forced string the way the tokenizer would spell it.

Appending `encode(jump_str)` after the existing output is usually not what the tokenizer would
produce for the whole text (the last output token and the first jumped characters may merge into
one token, e.g. '"' + 'name' -> '"name'). Generating from non-canonical token sequences hurts the
model, so the last few output tokens are re-encoded together with the jump string.

The text must never change: a candidate is accepted only if decoding the new sequence gives
exactly the old text plus the jump string. Re-encoding can fail that check, e.g. when the context
starts in the middle of a multi-byte character; then fewer context tokens are tried, down to none.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def jump_forward_retokenize(
    tokenizer: Any, output_ids: List[int], jump_str: str, context_tokens: int = 4
) -> Tuple[List[int], int]:
    """(new_tail_ids, num_replaced): replace output_ids[-num_replaced:] (maybe none) by new_tail_ids.

    Then decode(output_ids[:-num_replaced] + new_tail_ids) == decode(output_ids) + jump_str.
    The caller rolls the grammar back by num_replaced tokens and accepts new_tail_ids.
    Returns ([], 0) when jump_str is empty or no re-encoding keeps the text (skip the jump)."""
    if not jump_str:
        return [], 0
    expected = _decode(tokenizer, output_ids) + jump_str
    for num_replaced in range(min(context_tokens, len(output_ids)), -1, -1):
        keep = output_ids[: len(output_ids) - num_replaced]
        context = _decode(tokenizer, output_ids[len(keep):]) if num_replaced else ""
        new_tail = tokenizer.encode(context + jump_str, add_special_tokens=False)
        if new_tail and _decode(tokenizer, keep + new_tail) == expected:
            return list(new_tail), num_replaced
    return [], 0
