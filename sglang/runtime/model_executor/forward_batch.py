"""ForwardBatch: everything one model forward pass needs, and nothing about scheduling.

Models and attention backends read only this object. Tensors live on the model's device; the
`*_cpu` lists mirror lengths so backends never need a device->host sync to loop or size buffers.

Layout of the flattened token dimension: requests are concatenated in batch order; request i
contributes `extend_seq_lens[i]` tokens in EXTEND/MIXED mode and exactly one token in DECODE mode.
MIXED is an EXTEND batch in which some requests (decodes piggy-backed on a chunked prefill) extend
by one token; backends treat it exactly like EXTEND.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, auto
from typing import TYPE_CHECKING, List, Optional

import torch

if TYPE_CHECKING:
    from sglang.runtime.layers.attention.base import AttentionBackend
    from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool
    from sglang.runtime.multimodal.inputs import MultimodalInputs


class ForwardMode(IntEnum):
    EXTEND = auto()  # prefill of new tokens on top of a (possibly empty) cached prefix
    DECODE = auto()  # one new token per request
    MIXED = auto()  # extend + decode requests in one pass
    IDLE = auto()  # nothing to run (kept for tensor-parallel lockstep)

    def is_extend(self) -> bool:
        return self in (ForwardMode.EXTEND, ForwardMode.MIXED)

    def is_decode(self) -> bool:
        return self == ForwardMode.DECODE


@dataclass
class ForwardBatch:
    forward_mode: ForwardMode
    batch_size: int
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64, absolute positions in each sequence
    req_pool_indices: torch.Tensor  # [bs] int64, rows of req_to_token
    seq_lens: torch.Tensor  # [bs] int64, length of each sequence *after* this pass
    out_cache_loc: torch.Tensor  # [num_tokens] int64, KV slots written by this pass
    seq_lens_cpu: List[int]
    req_to_token_pool: "ReqToTokenPool"
    kv_pool: "KVPool"
    attn_backend: Optional["AttentionBackend"] = None

    # DECODE, when built by ScheduleBatch: [5, bs] whose rows are input_ids, positions,
    # req_pool_indices, seq_lens and out_cache_loc above (they are views of it), so a CUDA-graph
    # replay loads its inputs with one copy.
    decode_table: Optional[torch.Tensor] = None

    # EXTEND / MIXED only
    extend_seq_lens: Optional[torch.Tensor] = None  # [bs] new tokens per request
    extend_prefix_lens: Optional[torch.Tensor] = None  # [bs] cached tokens per request
    extend_start_loc: Optional[torch.Tensor] = None  # [bs] offset of request i in the token dim
    extend_seq_lens_cpu: Optional[List[int]] = None
    extend_prefix_lens_cpu: Optional[List[int]] = None
    # Images/videos of each request (None for text-only ones); None when no request has any.
    mm_inputs: Optional[List[Optional["MultimodalInputs"]]] = None
    # [3, num_tokens] M-RoPE positions when some request carries them (Qwen2-VL); models without
    # M-RoPE ignore it. Decode needs none: there all three components equal `positions`, which
    # already include each request's M-RoPE shift.
    mrope_positions: Optional[torch.Tensor] = None
    # [num_tokens] int64: the last sequence position each new token may attend to, set by models
    # whose image tokens attend both ways (Gemma 3, see multimodal/bidirectional.py); None means
    # causal (each token's own position). Backends read it when a layer runs.
    extend_visible_until: Optional[torch.Tensor] = None

    # Multi-LoRA: the adapter name of each request (None: the base model); None when no request
    # of the batch uses one. The LoRA manager turns it into slot segments before the pass.
    lora_names: Optional[List[Optional[str]]] = None

    # EAGLE draft heads: [num_tokens, F] the feature each token's draft step reads (the target's
    # hidden state, or the head's own output on later steps); None for every other model.
    spec_features: Optional[torch.Tensor] = None

    # Logits: which positions need full-vocabulary logits (for input logprobs).
    # For request i, logits are computed for its last `extend_logprob_lens_cpu[i]` ... see
    # LogitsMetadata; default is only the last token of each request.
    return_logprob: bool = False
    extend_logprob_start_lens_cpu: Optional[List[int]] = None  # per request, offset inside its extend segment

    # Free-form per-backend metadata (set by AttentionBackend.init_forward_metadata)
    attn_metadata: object = field(default=None, repr=False)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def last_token_indices(self) -> torch.Tensor:
        """Index into the token dim of each request's last token (the one whose logits we sample)."""
        if self.forward_mode.is_decode():
            return torch.arange(self.batch_size, device=self.input_ids.device)
        return self.extend_start_loc + self.extend_seq_lens - 1
