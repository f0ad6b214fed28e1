"""Input embeddings of an extend pass with encoder outputs over the placeholder rows.

Each request extends tokens [prefix, prefix + extend) of its sequence; an item overlapping that
range contributes exactly the overlapping rows of its encoder output, so chunked prefill may cut
an image anywhere (the next chunk takes the rest from the encoder cache).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch

from sglang.runtime.multimodal.encoder_cache import EncoderCache
from sglang.runtime.multimodal.inputs import MultimodalItem

# (first row in the token dim, item, first row of the item's output, end row of the item's output)
Piece = Tuple[int, MultimodalItem, int, int]
EncodeFn = Callable[[List[MultimodalItem]], List[torch.Tensor]]


def overlapping_pieces(forward_batch) -> List[Piece]:
    """The parts of every item that this extend pass covers."""
    mm_inputs = getattr(forward_batch, "mm_inputs", None)
    if not mm_inputs or not forward_batch.forward_mode.is_extend():
        return []
    pieces: List[Piece] = []
    start = 0
    for mm, prefix, n in zip(mm_inputs, forward_batch.extend_prefix_lens_cpu, forward_batch.extend_seq_lens_cpu):
        for item in mm.items if mm is not None else ():
            lo, hi = max(item.offset, prefix), min(item.end, prefix + n)
            if lo < hi:
                pieces.append((start + lo - prefix, item, lo - item.offset, hi - item.offset))
        start += n
    return pieces


def encode_items(items: List[MultimodalItem], encode: EncodeFn, cache: EncoderCache) -> Dict[int, torch.Tensor]:
    """Encoder output of each distinct item by content hash, through the cache."""
    unique: Dict[int, MultimodalItem] = {}
    for item in items:
        unique.setdefault(item.content_hash, item)
    ordered = list(unique.values())
    outputs = cache.get_or_compute([it.content_hash for it in ordered],
                                   lambda idx: encode([ordered[i] for i in idx]))
    for item in ordered:
        rows = outputs[item.content_hash].shape[0]
        if rows != item.length:
            raise RuntimeError(f"the vision encoder gave {rows} rows for a {item.modality} with "
                               f"{item.length} placeholder tokens")
    return outputs


def scatter_multimodal(embeds: torch.Tensor, pieces: List[Piece], encode: EncodeFn, cache: EncoderCache) -> torch.Tensor:
    """`embeds` (the text embeddings of the pass) with the encoder rows of `pieces` (from
    `overlapping_pieces`) written over their placeholders."""
    if not pieces:
        return embeds
    outputs = encode_items([p[1] for p in pieces], encode, cache)
    for row, item, a, b in pieces:
        embeds[row:row + b - a] = outputs[item.content_hash][a:b].to(embeds.dtype)
    return embeds
