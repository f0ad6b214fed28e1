"""Phi-3 (mini / medium, default rope): Mistral's layout, but checkpoints store q|k|v and gate|up
as fused tensors (`qkv_proj`, `gate_up_proj`). They are cut into the separate q/k/v and gate/up
tensors the shared layers load (lazily: a tensor-parallel rank still reads only its slices)."""

from __future__ import annotations

from typing import Iterable, Iterator, Tuple

import torch
from transformers import PretrainedConfig

from sglang.runtime.models.llama import LlamaForCausalLM, LlamaModel, head_dim_of, num_kv_heads_of
from sglang.runtime.models.mistral import MistralDecoderLayer


def split_fused(weights: Iterable[Tuple[str, torch.Tensor]], config: PretrainedConfig
                ) -> Iterator[Tuple[str, torch.Tensor]]:
    """Checkpoint tensors with each fused `qkv_proj` / `gate_up_proj` cut into its parts."""
    head_dim = head_dim_of(config)
    q, kv = config.num_attention_heads * head_dim, num_kv_heads_of(config) * head_dim
    parts = {".qkv_proj.": ((".q_proj.", q), (".k_proj.", kv), (".v_proj.", kv)),
             ".gate_up_proj.": ((".gate_proj.", config.intermediate_size), (".up_proj.", config.intermediate_size))}
    for name, tensor in weights:
        fused = next((key for key in parts if key in name), None)
        if fused is None:
            yield name, tensor
            continue
        sizes = parts[fused]
        if tensor.shape[0] != sum(n for _, n in sizes):
            raise ValueError(f"checkpoint tensor {name!r} has {tensor.shape[0]} rows; the config implies "
                             f"{' + '.join(str(n) for _, n in sizes)}")
        start = 0
        for part, rows in sizes:
            yield name.replace(fused, part), tensor.narrow(0, start, rows)
            start += rows


class Phi3DecoderLayer(MistralDecoderLayer):
    """No biases; config.sliding_window (when set) on every layer, as transformers does."""


class Phi3Model(LlamaModel):
    decoder_layer_class = Phi3DecoderLayer


class Phi3ForCausalLM(LlamaForCausalLM):
    model_class = Phi3Model

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        super().load_weights(split_fused(weights, self.config))
