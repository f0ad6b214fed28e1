"""KV cache of latent attention (DeepSeek): one vector per token and layer, `[kv latent | rope key]`.

`MLAAttention` reads that vector as the key of a single kv head and as its value (the output's
rope columns are dropped), so the value buffer of each layer *is* its key buffer: the pool holds
kv_lora_rank + qk_rope_head_dim numbers per token and layer (576 for DeepSeek-V2/V3, against
heads * (192 + 128) = 40,960 for their 128 heads expanded). Writes of k and v land in the same
storage with the same values; backends read it through the usual get_key/get_value_buffer.
"""

from __future__ import annotations

from typing import Any

import torch

from sglang.runtime.mem_cache.memory_pool import KVPool


class MLAKVPool(KVPool):
    def __init__(self, size: int, dtype: torch.dtype, latent_dim: int, num_layers: int, device: str):
        super().__init__(size, dtype, 1, latent_dim, 0, device)  # buffers are made below, once
        self.num_layers = num_layers
        self.k_buffer = [torch.zeros((size + 1, 1, latent_dim), dtype=dtype, device=device)
                         for _ in range(num_layers)]
        self.v_buffer = self.k_buffer
        if hasattr(self, "k_scale"):  # FP8 caches: one scale serves the aliased key and value
            self.k_scale = [1.0] * num_layers
            self.v_scale = self.k_scale

    @staticmethod
    def latent_bytes_per_token(latent_dim: int, num_layers: int, dtype: torch.dtype) -> int:
        return latent_dim * num_layers * torch.tensor([], dtype=dtype).element_size()


def kv_bytes_per_token(model_config: Any, kv_heads: int, dtype: torch.dtype) -> int:
    """Cache bytes one token takes on this rank: the latent vector for latent attention, else
    k and v of this rank's kv heads."""
    if getattr(model_config, "kv_lora_rank", None):
        return MLAKVPool.latent_bytes_per_token(model_config.head_dim, model_config.num_hidden_layers, dtype)
    return KVPool.bytes_per_token(kv_heads, model_config.head_dim, model_config.num_hidden_layers, dtype)


def make_kv_pool(model_config: Any, size: int, dtype: torch.dtype, kv_heads: int, device: str) -> KVPool:
    """The KV pool the model's attention reads: `MLAKVPool` for latent attention, else `KVPool`."""
    if getattr(model_config, "kv_lora_rank", None):
        return MLAKVPool(size, dtype, model_config.head_dim, model_config.num_hidden_layers, device)
    return KVPool(size, dtype, kv_heads, model_config.head_dim, model_config.num_hidden_layers, device)
