"""ModelRunner: owns the model, the KV memory, the attention backend and the decode CUDA graphs;
runs forward + sample.

Memory sizing (`--mem-fraction-static`): that fraction of the device's total memory holds the
weights plus the KV cache (and the req_to_token table). The rest is headroom for activations and
for the CUDA graphs, which are captured after the pool exists (their memory is logged). On CUDA the
pool therefore gets `free_after_weights - total * (1 - fraction)`; on CPU the same rule applies to
`--cpu-memory-budget-gb`. `--max-total-tokens` caps (or, alone, sets) the pool size. Startup logs
the resulting token capacity.
"""

from __future__ import annotations

import logging
from typing import List, Optional

import torch

from sglang.kernels import triton_available
from sglang.runtime.distributed.tensor_parallel import init_tensor_parallel, kv_heads_per_rank
from sglang.runtime.layers.attention.registry import create_attention_backend, get_attention_backend_class
from sglang.runtime.layers.cpu_kernels import apply_cpu_kernels
from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.mem_cache.mla_pool import kv_bytes_per_token, make_kv_pool
from sglang.runtime.model_executor.cuda_graph_runner import CudaGraphRunner, capture_batch_sizes, default_max_bs
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.one_token_gemv import apply_one_token_gemv
from sglang.runtime.sampling.sampler import Sampler
from sglang.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

_GiB = 1 << 30
_MiB = 1 << 20
MIN_KV_TOKENS = 16
CPU_MAX_RUNNING = 512
CUDA_MAX_RUNNING = 4096
_INT32_BYTES = 4


class ModelRunner:
    def __init__(self, server_args: ServerArgs, tp_rank: int = 0, dist_init_method: Optional[str] = None):
        """`dist_init_method` (tcp://host:port or file://path) joins the tensor-parallel process
        group of --tp-size ranks; tp_size 1 needs none."""
        self.server_args = server_args
        self.tp_rank = tp_rank
        self.device = server_args.device
        if self.device == "cuda":
            torch.cuda.set_device(server_args.local_gpu(tp_rank))
        self.tp = init_tensor_parallel(tp_rank, server_args.tp_size, dist_init_method, device=self.device)
        # Nodes of a multi-node launch draw their own default seeds; dummy weights must agree.
        self.seed = self.tp.first_ranks_value(server_args.random_seed)
        torch.manual_seed(self.seed)
        self.model_config = self._model_config(server_args)
        self.dtype = self.model_config.dtype
        self.model = load_model(self.model_config, server_args.load_format, self.device, self.seed,
                                server_args.quantization, tp=self.tp)
        self.model = self._as_pooling_model(self.model)
        self.is_generation = not getattr(self.model, "is_pooling_model", False)
        self.lora = self._init_lora()
        if server_args.enable_fused_gemv and self.device == "cuda" and triton_available() and self.lora is None:
            apply_one_token_gemv(self.model)
        self.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        if self.lora is not None:  # adapter slots are not parameters but take device memory too
            self.weight_bytes += self.lora.pool.nbytes()
        self.context_len = self.model_config.context_len
        self.use_cuda_graph = self._wants_cuda_graph()
        self._init_memory()
        self.attn_backend = create_attention_backend(server_args.attention_backend, self)
        if self.device == "cpu" and not server_args.disable_cpu_kernels:
            apply_cpu_kernels(self.model, self.attn_backend)
        self.sampler = Sampler()
        self.graph_runner: Optional[CudaGraphRunner] = None
        if self.use_cuda_graph and not self.defer_cuda_graphs:
            self.capture_cuda_graphs()

    # A runner whose model is not complete at construction (an EAGLE head borrows the target's
    # embedding afterwards) captures its graphs later, by calling capture_cuda_graphs itself.
    defer_cuda_graphs = False

    def capture_cuda_graphs(self) -> None:
        self.graph_runner = CudaGraphRunner(self, self.cuda_graph_batch_sizes(), self.padding_req_row)

    def _model_config(self, server_args: ServerArgs) -> ModelConfig:
        return ModelConfig(
            server_args.model_path,
            context_length=server_args.context_length,
            dtype=server_args.dtype,
            trust_remote_code=server_args.trust_remote_code,
            device=self.device,
            load_format=server_args.load_format,
            model_impl=server_args.model_impl,
        )

    def _as_pooling_model(self, model):
        """Embedding / reward models get their pooling rule (layers/pooler.py); a causal LM is
        wrapped as one with --is-embedding."""
        from sglang.runtime.layers.pooler import resolve_pooling_config
        from sglang.runtime.models.embedding_model import as_pooling_model

        args = self.server_args
        if not (args.is_embedding or getattr(model, "is_pooling_model", False)):
            return model
        pooling = resolve_pooling_config(self.model_config.model_path, args.embedding_pooling, args.embedding_normalize)
        return as_pooling_model(model, args.is_embedding, pooling)

    def _init_lora(self):
        """Multi-LoRA (runtime/lora/): wraps the targeted linear layers; before the KV cache is
        sized, so the adapter slots count as weights."""
        if not self.server_args.enable_lora:
            return None
        from sglang.runtime.lora.manager import LoraManager

        return LoraManager(self.model, self.server_args, self.device, self.dtype)

    # ---------------------------------------------------------------- memory
    def kv_dtype(self) -> torch.dtype:
        from sglang.runtime.mem_cache.kv_quant import resolve_kv_cache_dtype

        return resolve_kv_cache_dtype(self.server_args.kv_cache_dtype, self.dtype)

    def _wants_cuda_graph(self) -> bool:
        if self.device != "cuda" or self.server_args.disable_cuda_graph:
            return False
        if not getattr(self.model, "supports_cuda_graph", True):  # the transformers fallback
            logger.info("%s cannot be captured in a CUDA graph: decode runs eagerly", type(self.model).__name__)
            return False
        backend = get_attention_backend_class(self.server_args.attention_backend)
        if not backend.supports_cuda_graph:
            logger.info("attention backend %r has no CUDA-graph hooks: decode runs eagerly",
                        self.server_args.attention_backend)
        return bool(backend.supports_cuda_graph)

    def _budget_bytes(self) -> int:
        """Bytes the KV pool and req_to_token table may take (see the module docstring)."""
        frac = self.server_args.mem_fraction_static
        if self.device == "cuda":
            torch.cuda.empty_cache()  # scratch freed by weight init would otherwise count as used
            free, total = torch.cuda.mem_get_info()
            logger.info("device memory: %.2f GiB total, %.2f GiB free after weights (%.2f GiB)",
                        total / _GiB, free / _GiB, self.weight_bytes / _GiB)
            return int(free - total * (1.0 - frac))
        return int(self.server_args.cpu_memory_budget_gb * _GiB * frac - self.weight_bytes)

    def _default_max_running(self, tokens: int) -> int:
        cap = CPU_MAX_RUNNING if self.device == "cpu" else CUDA_MAX_RUNNING
        return min(max(tokens // 4, MIN_KV_TOKENS), cap)

    def _table_rows(self, max_running: int) -> int:
        # +1 so a request slot is always there for a request admitted while others finish,
        # +1 for the all-zero row that CUDA-graph padding rows point at; EAGLE's tree branch rows.
        return max_running + 1 + (1 if self.use_cuda_graph else 0) + self._spec_table_rows()

    def _is_eagle_target(self) -> bool:
        return self.server_args.speculative_algorithm == "EAGLE" and not getattr(self, "is_draft", False)

    def _spec_table_rows(self) -> int:
        if not self._is_eagle_target():
            return 0
        from sglang.runtime.speculative.eagle_features import scratch_rows

        return scratch_rows(self.server_args)

    def _spec_bytes_per_token(self) -> int:
        """EAGLE keeps a target feature and the head's KV per KV slot (eagle_features.py)."""
        if not self._is_eagle_target():
            return 0
        from sglang.runtime.speculative.eagle_features import eagle_bytes_per_token

        return eagle_bytes_per_token(self.server_args, self.model_config, self.dtype)

    def _plan_memory(self, per_token: int) -> tuple:
        """(KV token capacity, max running requests) within the budget."""
        budget = self._budget_bytes()
        tokens = max(budget // per_token, 0)
        if self.device == "cpu":
            # A tiny model would otherwise get millions of slots; more than this never helps on a CPU.
            tokens = min(tokens, max(self.context_len * 16, 1 << 16))
        max_total = self.server_args.max_total_tokens
        max_running = self.server_args.max_running_requests or self._default_max_running(max_total or tokens)
        table_bytes = self._table_rows(max_running) * (self.context_len + 4) * _INT32_BYTES
        tokens = min(tokens, max((budget - table_bytes) // per_token, 0))
        if max_total and max_total > tokens:
            logger.warning("--max-total-tokens %d exceeds the memory budget (%d tokens); using it anyway",
                           max_total, tokens)
        num_tokens = max_total or tokens
        if num_tokens < MIN_KV_TOKENS:
            raise RuntimeError(
                f"not enough memory for the KV cache ({num_tokens} tokens); raise --mem-fraction-static "
                f"or --max-total-tokens"
            )
        return int(num_tokens), int(max_running)

    def _init_memory(self) -> None:
        cfg = self.model_config
        # This rank's kv heads (its share, or one replicated head when ranks outnumber them).
        kv_heads = kv_heads_per_rank(cfg.num_key_value_heads, self.tp.size)
        per_token = kv_bytes_per_token(cfg, kv_heads, self.kv_dtype()) + self._spec_bytes_per_token()
        self.max_total_num_tokens, self.max_running_requests = self._plan_memory(per_token)
        self.req_to_token_pool = ReqToTokenPool(self._table_rows(self.max_running_requests), self.context_len + 4,
                                                self.device)
        # Taken from the free list so no request ever writes it: it stays all zeros (slot 0).
        self.padding_req_row: Optional[int] = self.req_to_token_pool.alloc(1)[0] if self.use_cuda_graph else None
        self.allocator = TokenSlotAllocator(self.max_total_num_tokens, self.device)
        # Latent attention (DeepSeek) gets a pool whose value buffers alias its key buffers.
        self.kv_pool = make_kv_pool(cfg, self.max_total_num_tokens, self.kv_dtype(), kv_heads, self.device)
        logger.info(
            "KV cache: token capacity %d (%.1f MiB at %d bytes/token), max running requests %d, "
            "context length %d",
            self.max_total_num_tokens,
            self.max_total_num_tokens * per_token / _MiB,
            per_token,
            self.max_running_requests,
            self.context_len,
        )

    def cuda_graph_batch_sizes(self) -> List[int]:
        """Decode batch sizes to capture: --cuda-graph-bs if given, else the standard ladder up to
        --cuda-graph-max-bs (default by device memory), never above max running requests."""
        explicit = getattr(self.server_args, "cuda_graph_bs", None)
        if explicit:
            return sorted(bs for bs in set(explicit) if 0 < bs <= self.max_running_requests)
        max_bs = self.server_args.cuda_graph_max_bs or default_max_bs(
            torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
        return capture_batch_sizes(min(max_bs, self.max_running_requests))

    # ---------------------------------------------------------------- execution
    @torch.inference_mode()
    def forward(self, forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        """Decode batches that fit a captured size replay a CUDA graph (their logits are then a
        view of a static buffer, valid until the next forward); everything else runs eagerly."""
        if self.graph_runner is not None and self.graph_runner.can_run(forward_batch):
            forward_batch.attn_backend = self.attn_backend
            return self.graph_runner.replay(forward_batch)
        return self.forward_eager(forward_batch)

    @torch.inference_mode()
    def forward_eager(self, forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        forward_batch.attn_backend = self.attn_backend
        self.attn_backend.init_forward_metadata(forward_batch)
        if self.lora is not None:  # the adapters' slots and row segments (graphs: at replay)
            counts = forward_batch.extend_seq_lens_cpu if forward_batch.forward_mode.is_extend() else None
            self.lora.prepare(forward_batch.lora_names, counts or [1] * forward_batch.batch_size)
        return self.model.forward(forward_batch.input_ids, forward_batch.positions, forward_batch)

    @torch.inference_mode()
    def sample(self, logits: torch.Tensor, sampling_info) -> torch.Tensor:
        return self.sampler.sample(logits, sampling_info)

    def vocab_size(self) -> int:
        return self.model_config.vocab_size

    def eos_token_ids(self) -> set:
        return set(self.model_config.hf_eos_token_ids or ())

