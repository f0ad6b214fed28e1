"""The batch's [bs, V] allowed-token mask (SamplingBatchInfo.allowed_token_mask), in one pass.

Rows are filled on the CPU, where the matchers live, and the finished mask moves to the device
once. Grammars offering a packed 32-tokens-per-int32 fast path (`fill_bitmask_row`, xgrammar)
write into one shared bitmask that is unpacked for all of them in a single vectorised op.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence, Union

import numpy as np
import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarObject

_BIT_SHIFTS = torch.arange(32, dtype=torch.int32)


def bitmask_words(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """int32 bitmask [..., ceil(V/32)] -> bool [..., V] (bit j of word i is token 32 * i + j)."""
    if bitmask.device.type == "cpu" and sys.byteorder == "little":
        # numpy's unpackbits is ~50x faster than shift-and-mask in torch on CPU (0.5 ms vs 36 ms
        # for 32 x 128k); on a little-endian host byte k of word i holds tokens 32i+8k..32i+8k+7.
        raw = bitmask.contiguous().numpy().view(np.uint8)
        return torch.from_numpy(np.unpackbits(raw, axis=-1, count=vocab_size, bitorder="little").view(np.bool_))
    bits = (bitmask.unsqueeze(-1) >> _BIT_SHIFTS.to(bitmask.device)) & 1
    return bits.flatten(-2)[..., :vocab_size].bool()


def build_allowed_token_mask(
    grammars: Sequence[Optional[BaseGrammarObject]], vocab_size: int, device: Union[str, torch.device] = "cpu"
) -> Optional[torch.Tensor]:
    """[bs, vocab_size] bool, True where allowed; rows without a grammar allow everything.

    None when no request in the batch is constrained (the sampler then skips masking)."""
    if all(g is None for g in grammars):
        return None
    mask = torch.ones(len(grammars), vocab_size, dtype=torch.bool)
    packed = [i for i, g in enumerate(grammars) if g is not None and hasattr(g, "fill_bitmask_row")]
    if packed:
        bitmask = torch.zeros(len(packed), bitmask_words(vocab_size), dtype=torch.int32)
        for row, i in enumerate(packed):
            grammars[i].fill_bitmask_row(bitmask, row)
        mask[packed] = unpack_bitmask(bitmask, vocab_size)
    packed_set = set(packed)
    for i, grammar in enumerate(grammars):
        if grammar is not None and i not in packed_set:
            grammar.fill_allowed_mask(mask[i])
    return mask.to(device, non_blocking=True)
