"""The target's features for EAGLE, kept per KV slot, and the memory they and the draft take.

Every target forward pass (prefill, decode, verify; eager or CUDA-graph replay) writes each
token's feature into `FeatureStore.buffer[slot]` where `slot` is the KV slot the token's KV
went to: the write is part of the model's forward (`LlamaModel` calls `store.write`), so a
captured graph records it and the scheduler needs no hook. The draft head later reads the
features of a request's positions through its req_to_token row; features of a radix-cached
prefix stay with its slots. Slot 0 (padding rows) absorbs the writes of padded graph rows.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Tuple

import torch
from torch import nn


class FeatureStore:
    """[slots + 1, F] features by KV slot; `layer_ids` None = the model's final normed hidden
    state, else the residual stream entering each listed layer, concatenated in order."""

    def __init__(self, num_slots: int, width: int, dtype: torch.dtype, device: str,
                 layer_ids: Optional[Sequence[int]]):
        self.buffer = torch.zeros((num_slots + 1, width), dtype=dtype, device=device)
        self.layer_ids: Tuple[int, ...] = tuple(layer_ids) if layer_ids is not None else ()

    def write(self, slots: torch.Tensor, parts: Sequence[torch.Tensor]) -> None:
        feats = parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=-1)
        self.buffer.index_copy_(0, slots.to(torch.int64), feats.to(self.buffer.dtype))

    def read(self, slots: torch.Tensor) -> torch.Tensor:
        return self.buffer.index_select(0, slots.to(torch.int64))


def attach_feature_store(target: nn.Module, store: FeatureStore) -> None:
    """Model transform: the target's decoder stack writes features into `store` on every pass."""
    from sglang.runtime.models.llama import LlamaModel

    inner = getattr(target, "model", None)
    if not isinstance(inner, LlamaModel) or type(inner).forward is not LlamaModel.forward:
        raise ValueError(f"--speculative-algorithm EAGLE needs a target on the shared Llama decoder stack "
                         f"(Llama, Mistral, Qwen2/3, ...); {type(target).__name__} has none")
    bad = [i for i in store.layer_ids if not 0 <= i < len(inner.layers)]
    if bad:
        raise ValueError(f"the EAGLE head reads target layers {list(store.layer_ids)}, but the target has "
                         f"{len(inner.layers)} layers")
    inner.feature_store = store


def read_draft_config(path: str) -> dict:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ValueError(f"--speculative-draft-model-path {path!r} has no config.json (an EAGLE head checkpoint "
                         f"directory is expected)")
    with open(cfg_path, encoding="utf-8") as f:
        return json.load(f)


def is_eagle3(draft_cfg: dict) -> bool:
    archs = draft_cfg.get("architectures") or []
    return any("Eagle3" in a for a in archs)


def eagle_bytes_per_token(server_args, target_cfg, dtype: torch.dtype) -> int:
    """Extra bytes per KV slot EAGLE needs: the target feature (H or 3H) and the head's KV."""
    draft = read_draft_config(server_args.speculative_draft_model_path)
    hidden = target_cfg.hidden_size
    width = 3 * hidden if is_eagle3(draft) else hidden
    heads = draft.get("num_key_value_heads") or draft.get("num_attention_heads", 1)
    head_dim = draft.get("head_dim") or draft.get("hidden_size", hidden) // max(draft.get("num_attention_heads", 1), 1)
    layers = draft.get("num_hidden_layers", 1)
    elem = torch.empty((), dtype=dtype).element_size()
    return (width + 2 * layers * heads * head_dim) * elem


def scratch_rows_per_req(server_args) -> int:
    """Branch rows one request needs: a frontier of topk while drafting, the leaves but one of
    num_draft_tokens - 1 nodes while verifying."""
    return max(server_args.speculative_eagle_topk or 1, server_args.speculative_num_draft_tokens or 1)


def scratch_rows(server_args) -> int:
    """req_to_token rows EAGLE reserves for tree branches (drafting and verification)."""
    return max(server_args.speculative_disable_batch_size, 1) * scratch_rows_per_req(server_args)
