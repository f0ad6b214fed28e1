"""What a request carries for its images and videos, from the processor to the model runner.

Every item covers one contiguous run of placeholder tokens in the prompt (`offset`, `length`);
its encoder output has exactly `length` rows. The radix cache sees those positions as keys derived
from the item's content hash (see `cache_key_ids`), so the same image + text is a cache hit and a
different image with the same text never reuses the image's KV.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import torch

IMAGE = "image"
VIDEO = "video"
_KEY_SPACE = 1 << 62  # image keys are negative, so they never equal a real token id


@dataclass
class MultimodalItem:
    modality: str  # IMAGE or VIDEO
    content_hash: int  # of the processed tensors: what the encoder sees
    features: Dict[str, torch.Tensor]  # this item's processor outputs (pixel_values, grid_thw, ...)
    offset: int  # first placeholder position in the prompt
    length: int  # placeholder tokens == rows of the encoder output

    @property
    def end(self) -> int:
        return self.offset + self.length

    def cache_key(self) -> int:
        """The radix key of each of this item's positions."""
        return -1 - (self.content_hash % _KEY_SPACE)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features.values())


@dataclass
class MultimodalInputs:
    items: List[MultimodalItem] = field(default_factory=list)
    # M-RoPE models (Qwen2-VL): [3, prompt_len] (time, height, width) positions of the prompt, and
    # the shift of every later token's position (positions beyond the prompt are index + delta).
    mrope_positions: Optional[torch.Tensor] = None
    mrope_delta: int = 0
    # Items attend to themselves both ways during prefill (Gemma 3): each must be computed in one
    # extend pass, so chunks and cached prefixes never end inside one (multimodal/bidirectional.py).
    bidirectional: bool = False

    def cache_key_ids(self, input_ids: List[int]) -> List[int]:
        """`input_ids` with every item's positions replaced by that item's content key."""
        keys = list(input_ids)
        for item in self.items:
            keys[item.offset:item.end] = [item.cache_key()] * item.length
        return keys

    def rope_positions(self, start: int, count: int) -> torch.Tensor:
        """[3, count] M-RoPE positions of tokens start .. start+count (prompt, then outputs)."""
        assert self.mrope_positions is not None
        prompt_len = self.mrope_positions.shape[1]
        inside = self.mrope_positions[:, start:min(start + count, prompt_len)]
        first_after = max(start, prompt_len)
        # Empty when the range ends inside the prompt (a chunk of a chunked prefill).
        after = torch.arange(first_after, max(first_after, start + count), dtype=torch.int64) + self.mrope_delta
        return torch.cat([inside.to(torch.int64), after.expand(3, -1)], dim=1)

    def nbytes(self) -> int:
        return sum(item.nbytes() for item in self.items)

    def exported(self) -> "MultimodalInputs":
        """A copy whose large tensors sit in shared memory (for the trip to the scheduler)."""
        from sglang.runtime.multimodal.shared_tensor import export_features

        items = [replace(it, features=export_features(it.features)) for it in self.items]
        return replace(self, items=items)

    def imported(self) -> "MultimodalInputs":
        """The receiving side of `exported`: tensors copied out, segments unlinked."""
        from sglang.runtime.multimodal.shared_tensor import import_features

        for item in self.items:
            item.features = import_features(item.features)
        return self


def content_hash(tensors: Dict[str, torch.Tensor]) -> int:
    """A 63-bit digest of tensors' names, shapes, dtypes and bytes."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return int.from_bytes(digest.digest(), "little") >> 1


def placeholder_spans(input_ids: List[int], token_id: int) -> List[tuple]:
    """(offset, length) of each maximal run of `token_id` in `input_ids`."""
    spans, i, n = [], 0, len(input_ids)
    while i < n:
        if input_ids[i] != token_id:
            i += 1
            continue
        j = i
        while j < n and input_ids[j] == token_id:
            j += 1
        spans.append((i, j - i))
        i = j
    return spans
