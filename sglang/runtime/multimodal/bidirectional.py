"""Images whose tokens attend to each other both ways (Gemma 3) on attention that is causal.

During prefill every placeholder token of such an image may see every token of the same image,
earlier and later; text stays causal, and decode is plain causal (the whole image is in the past
by then). The attention backends take this as one limit per new token of an extend pass: the token
at position p sees key positions <= `visible_until[p]`, which is p for text and the image's last
position inside an image (a sliding window still bounds keys from below only).

That works only when an image's whole run is computed in one extend pass, so for requests whose
MultimodalInputs are `bidirectional` the scheduler never cuts one: a chunked prefill ends at an
image's start (or, when that would leave the chunk empty, at its end), and a cached prefix that
would end inside an image is cut back to the image's start.
"""

from __future__ import annotations

from typing import Optional

import torch

from sglang.runtime.multimodal.inputs import MultimodalInputs, MultimodalItem


def item_cut_at(mm: Optional[MultimodalInputs], pos: int) -> Optional[MultimodalItem]:
    """The item that a cut between positions pos - 1 and pos would split, if any (only for
    bidirectional inputs: other items may be cut anywhere)."""
    if mm is None or not mm.bidirectional:
        return None
    for item in mm.items:
        if item.offset < pos < item.end:
            return item
    return None


def prefix_floor(mm: Optional[MultimodalInputs], length: int) -> int:
    """The longest prefix of at most `length` tokens that splits no bidirectional item."""
    item = item_cut_at(mm, length)
    return item.offset if item is not None else length


def chunk_end(mm: Optional[MultimodalInputs], start: int, end: int) -> int:
    """Where a prefill chunk [start, end) must end so that it splits no bidirectional item: back
    at the item's start, or on to its end when going back would leave the chunk empty."""
    item = item_cut_at(mm, end)
    if item is None:
        return end
    return item.offset if item.offset > start else item.end


def visible_until(forward_batch) -> Optional[torch.Tensor]:
    """[num_tokens] int64 on the batch's device: the last key position each new token of an
    extend pass may see; None when the pass covers no item (plain causal attention)."""
    mm_inputs = getattr(forward_batch, "mm_inputs", None)
    if not mm_inputs or not forward_batch.forward_mode.is_extend():
        return None
    limits: Optional[torch.Tensor] = None
    start = 0
    for mm, prefix, n in zip(mm_inputs, forward_batch.extend_prefix_lens_cpu, forward_batch.extend_seq_lens_cpu):
        for item in mm.items if mm is not None else ():
            lo, hi = max(item.offset, prefix), min(item.end, prefix + n)
            if lo >= hi:
                continue
            if (lo, hi) != (item.offset, item.end):
                raise RuntimeError(f"an extend pass covers tokens [{lo}, {hi}) of the {item.modality} at "
                                   f"[{item.offset}, {item.end}); a bidirectional item must be computed in "
                                   f"one pass (the scheduler keeps chunks and cached prefixes off its inside)")
            if limits is None:
                limits = _causal_limits(forward_batch)
            limits[start + lo - prefix:start + hi - prefix] = item.end - 1
        start += n
    return None if limits is None else limits.to(forward_batch.positions.device)


def _causal_limits(forward_batch) -> torch.Tensor:
    """Every new token's own position (host tensor), the limit of plain causal attention."""
    return torch.cat([torch.arange(p, p + n, dtype=torch.int64)
                      for p, n in zip(forward_batch.extend_prefix_lens_cpu, forward_batch.extend_seq_lens_cpu)])
