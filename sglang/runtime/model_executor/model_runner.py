"""ModelRunner: owns the model, the KV memory and the attention backend; runs forward + sample.

KV pool sizing: on CUDA, `mem_fraction_static` of total device memory holds weights plus KV, so
the pool gets what that leaves after weights; on CPU the same rule applies to
`--cpu-memory-budget-gb`. `--max-total-tokens` caps (or, alone, sets) the pool size.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from sglang.runtime.layers.attention.registry import create_attention_backend
from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.sampling.sampler import Sampler
from sglang.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

_GiB = 1 << 30


class ModelRunner:
    def __init__(self, server_args: ServerArgs, tp_rank: int = 0):
        self.server_args = server_args
        self.tp_rank = tp_rank
        self.device = server_args.device
        if self.device == "cuda":
            torch.cuda.set_device(server_args.base_gpu_id + tp_rank)
        torch.manual_seed(server_args.random_seed)
        self.model_config = ModelConfig(
            server_args.model_path,
            context_length=server_args.context_length,
            dtype=server_args.dtype,
            trust_remote_code=server_args.trust_remote_code,
            device=self.device,
        )
        self.dtype = self.model_config.dtype
        self.model = load_model(self.model_config, server_args.load_format, self.device, server_args.random_seed)
        self.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.context_len = self.model_config.context_len
        self._init_memory()
        self.attn_backend = create_attention_backend(server_args.attention_backend, self)
        self.sampler = Sampler()

    # ---------------------------------------------------------------- memory
    def kv_dtype(self) -> torch.dtype:
        name = self.server_args.kv_cache_dtype
        return self.dtype if name == "auto" else getattr(torch, name)

    def _budget_bytes(self) -> int:
        frac = self.server_args.mem_fraction_static
        if self.device == "cuda":
            free, total = torch.cuda.mem_get_info()
            used_by_others = total - free  # includes our weights
            return int(total * frac - used_by_others)
        return int(self.server_args.cpu_memory_budget_gb * _GiB * frac - self.weight_bytes)

    def _init_memory(self) -> None:
        cfg = self.model_config
        per_token = KVPool.bytes_per_token(cfg.num_key_value_heads, cfg.head_dim, cfg.num_hidden_layers, self.kv_dtype())
        budget_tokens = max(self._budget_bytes() // per_token, 0)
        if self.device == "cpu":
            # A tiny model would otherwise get millions of slots; more than this never helps on a CPU.
            budget_tokens = min(budget_tokens, max(self.context_len * 16, 1 << 16))
        max_total = self.server_args.max_total_tokens
        num_tokens = min(budget_tokens, max_total) if max_total else budget_tokens
        if max_total and max_total > budget_tokens:
            logger.warning("--max-total-tokens %d exceeds the memory budget (%d tokens); using it anyway", max_total, budget_tokens)
            num_tokens = max_total
        if num_tokens < 16:
            raise RuntimeError(
                f"not enough memory for the KV cache ({num_tokens} tokens); raise --mem-fraction-static "
                f"or --max-total-tokens"
            )
        self.max_total_num_tokens = int(num_tokens)
        max_running = self.server_args.max_running_requests or min(
            max(self.max_total_num_tokens // 4, 16), 512 if self.device == "cpu" else 4096
        )
        self.max_running_requests = max_running
        # +1 row so a request slot is always there for a request admitted while others finish
        self.req_to_token_pool = ReqToTokenPool(max_running + 1, self.context_len + 4, self.device)
        self.allocator = TokenSlotAllocator(self.max_total_num_tokens, self.device)
        self.kv_pool = KVPool(
            self.max_total_num_tokens,
            self.kv_dtype(),
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.num_hidden_layers,
            self.device,
        )
        logger.info(
            "KV cache: %d tokens (%.1f MiB), max running requests %d, context length %d",
            self.max_total_num_tokens,
            self.max_total_num_tokens * per_token / (1 << 20),
            max_running,
            self.context_len,
        )

    # ---------------------------------------------------------------- execution
    @torch.inference_mode()
    def forward(self, forward_batch: ForwardBatch):
        forward_batch.attn_backend = self.attn_backend
        self.attn_backend.init_forward_metadata(forward_batch)
        return self.model.forward(forward_batch.input_ids, forward_batch.positions, forward_batch)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, sampling_info) -> torch.Tensor:
        return self.sampler.sample(logits, sampling_info)

    def vocab_size(self) -> int:
        return self.model_config.vocab_size

    def eos_token_ids(self) -> set:
        return set(self.model_config.hf_eos_token_ids or ())

    def memory_info(self) -> Optional[dict]:
        return {"max_total_num_tokens": self.max_total_num_tokens, "weight_bytes": self.weight_bytes}
