"""The batch's [bs, V] allowed-token mask (SamplingBatchInfo.allowed_token_mask), in one pass.

Rows are filled on the host, where the matchers live, into one packed int32 bitmask (32 tokens
per word, 16x smaller than a bool mask); the bitmask crosses to the device through pinned memory
without a blocking copy and is unpacked there. Grammars that share a `batch_filler` (xgrammar's
multi-threaded BatchGrammarMatcher) fill all their rows in one native call; others fill a bool
row that is packed with numpy.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarObject
from sglang.runtime.host_device import host_empty, host_to_device


def bitmask_words(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """int32 bitmask [..., ceil(V/32)] -> bool [..., V] (bit j of word i is token 32 * i + j)."""
    if bitmask.device.type == "cpu" and sys.byteorder == "little":
        # numpy's unpackbits is ~50x faster than shift-and-mask in torch on CPU (0.5 ms vs 36 ms
        # for 32 x 128k); on a little-endian host byte k of word i holds tokens 32i+8k..32i+8k+7.
        raw = bitmask.contiguous().numpy().view(np.uint8)
        return torch.from_numpy(np.unpackbits(raw, axis=-1, count=vocab_size, bitorder="little").view(np.bool_))
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :vocab_size].bool()


def pack_bool_row(mask_row: torch.Tensor, out_row: torch.Tensor) -> None:
    """bool [V] -> int32 words written into `out_row` ([ceil(V/32)], little-endian bit order)."""
    packed = np.packbits(mask_row.numpy(), bitorder="little")
    words = out_row.numpy().view(np.uint8)
    words[: packed.size] = packed
    words[packed.size:] = 0


def fill_bitmask(grammars: Sequence[Optional[BaseGrammarObject]], bitmask: torch.Tensor, vocab_size: int) -> None:
    """Write row i of the host int32 `bitmask` for grammars[i]; rows without a grammar allow all."""
    groups: Dict[int, List[int]] = {}
    scratch: Optional[torch.Tensor] = None
    for i, grammar in enumerate(grammars):
        if grammar is None:
            bitmask[i].fill_(-1)
        elif grammar.batch_filler is not None:
            groups.setdefault(id(grammar.batch_filler), []).append(i)
        else:
            if scratch is None:
                scratch = torch.empty(vocab_size, dtype=torch.bool)
            grammar.fill_allowed_mask(scratch)
            pack_bool_row(scratch, bitmask[i])
    for rows in groups.values():
        grammars[rows[0]].batch_filler.fill_rows([grammars[i] for i in rows], bitmask, rows)


def build_allowed_token_mask(
    grammars: Sequence[Optional[BaseGrammarObject]], vocab_size: int, device: Union[str, torch.device] = "cpu"
) -> Optional[torch.Tensor]:
    """[bs, vocab_size] bool on `device`, True where allowed; rows without a grammar allow all.

    None when no request in the batch is constrained (the sampler then skips masking). Never
    waits for the device's queue, so it may run while a forward pass is in flight."""
    if all(g is None for g in grammars):
        return None
    bitmask = host_empty((len(grammars), bitmask_words(vocab_size)), torch.int32, device)
    fill_bitmask(grammars, bitmask, vocab_size)
    return unpack_bitmask(host_to_device(bitmask, device), vocab_size)
