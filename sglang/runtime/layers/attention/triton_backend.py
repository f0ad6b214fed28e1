"""The `triton` attention backend: our Triton decode/extend kernels over the paged KV pool.

Per batch, `init_forward_metadata` only collects tensors the kernels read and sizes launches from
the host-side `*_cpu` lists, so no step here waits on the device. Decode needs float32 scratch
for its split-K partials; it is allocated once per batch (shared by all layers) or, under CUDA
graphs, carved from one static buffer made by `init_cuda_graph_state`.

Reads from the model runner: `device`, `req_to_token_pool`, `kv_pool`,
`model_config.num_attention_heads` and `server_args.tp_size` (to size the graph scratch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from sglang.kernels.decode_attention import decode_attention_fwd, decode_scratch
from sglang.kernels.extend_attention import extend_attention_fwd
from sglang.runtime.layers.attention.base import AttentionBackend

if TYPE_CHECKING:
    from sglang.runtime.layers.attention.radix_attention import RadixAttention
    from sglang.runtime.model_executor.forward_batch import ForwardBatch

DEFAULT_NUM_KV_SPLITS = 8


@dataclass
class DecodeMetadata:
    req_pool_indices: torch.Tensor
    seq_lens: torch.Tensor
    attn_logits: torch.Tensor  # [bs, H, num_kv_splits, Dv + 1] float32 scratch


@dataclass
class ExtendMetadata:
    req_pool_indices: torch.Tensor
    seq_lens: torch.Tensor
    extend_seq_lens: torch.Tensor
    extend_start_loc: torch.Tensor
    max_len_extend: int


def triton_extend(q, k, v, layer: "RadixAttention", forward_batch: "ForwardBatch", req_to_token: torch.Tensor,
                  md: Optional[ExtendMetadata] = None, save_kv_cache: bool = True) -> torch.Tensor:
    """Extend attention of one layer through our Triton kernel, with the batch's per-token limits
    (`extend_visible_until`, Gemma 3's image tokens) when set. Also the flashinfer backend's path
    for batches with limits, which FlashInfer's masks do not express."""
    pool = forward_batch.kv_pool
    if save_kv_cache:
        pool.set_kv_buffer(layer.layer_id, forward_batch.out_cache_loc, k, v)
    md = md if md is not None else TritonAttnBackend._extend_metadata(forward_batch)
    num_heads, v_dim = layer.tp_q_head_num, layer.v_head_dim
    o = q.new_empty(q.shape[0], num_heads, v_dim)
    extend_attention_fwd(
        q.view(-1, num_heads, layer.qk_head_dim),
        k.view(-1, layer.tp_k_head_num, layer.qk_head_dim),
        v.view(-1, layer.tp_v_head_num, v_dim),
        o,
        pool.get_key_buffer(layer.layer_id),
        pool.get_value_buffer(layer.layer_id),
        req_to_token,
        md.req_pool_indices,
        md.seq_lens,
        md.extend_seq_lens,
        md.extend_start_loc,
        md.max_len_extend,
        sm_scale=layer.scaling,
        logit_cap=layer.logit_cap,
        sliding_window=layer.sliding_window_size,
        visible_until=forward_batch.extend_visible_until,
    )
    return o.view(-1, num_heads * v_dim)


def _num_q_heads_per_rank(model_runner) -> int:
    tp_size = getattr(getattr(model_runner, "server_args", None), "tp_size", 1) or 1
    return model_runner.model_config.num_attention_heads // tp_size


class TritonAttnBackend(AttentionBackend):
    supports_cuda_graph = True

    def __init__(self, model_runner, num_kv_splits: int = DEFAULT_NUM_KV_SPLITS):
        if not str(model_runner.device).startswith("cuda"):
            raise ValueError(
                f"the triton attention backend needs a CUDA device, got {model_runner.device!r}; "
                "use --attention-backend torch_native on CPU"
            )
        self.device = model_runner.device
        self.req_to_token = model_runner.req_to_token_pool.req_to_token
        self.num_q_heads = _num_q_heads_per_rank(model_runner)
        self.v_head_dim = model_runner.kv_pool.v_head_dim
        self.num_kv_splits = num_kv_splits
        self.graph_attn_logits: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ metadata
    def init_forward_metadata(self, forward_batch: "ForwardBatch") -> None:
        mode = forward_batch.forward_mode
        if mode.is_decode():
            scratch = decode_scratch(
                forward_batch.batch_size, self.num_q_heads, self.num_kv_splits, self.v_head_dim, self.device
            )
            forward_batch.attn_metadata = DecodeMetadata(forward_batch.req_pool_indices, forward_batch.seq_lens, scratch)
        elif mode.is_extend():  # MIXED too: its decodes are extends of length 1
            forward_batch.attn_metadata = self._extend_metadata(forward_batch)
        else:  # IDLE: nothing runs
            forward_batch.attn_metadata = None

    @staticmethod
    def _extend_metadata(forward_batch: "ForwardBatch") -> ExtendMetadata:
        lens_cpu = forward_batch.extend_seq_lens_cpu
        if lens_cpu is None or forward_batch.extend_seq_lens is None or forward_batch.extend_start_loc is None:
            raise ValueError(
                "an EXTEND/MIXED ForwardBatch needs extend_seq_lens, extend_start_loc and extend_seq_lens_cpu"
            )
        return ExtendMetadata(
            req_pool_indices=forward_batch.req_pool_indices,
            seq_lens=forward_batch.seq_lens,
            extend_seq_lens=forward_batch.extend_seq_lens,
            extend_start_loc=forward_batch.extend_start_loc,
            max_len_extend=max(lens_cpu, default=0),
        )

    # ------------------------------------------------------------------ forward
    def forward_extend(self, q, k, v, layer: "RadixAttention", forward_batch: "ForwardBatch", save_kv_cache=True):
        return triton_extend(q, k, v, layer, forward_batch, self.req_to_token, forward_batch.attn_metadata,
                             save_kv_cache)

    def forward_decode(self, q, k, v, layer: "RadixAttention", forward_batch: "ForwardBatch", save_kv_cache=True):
        pool = forward_batch.kv_pool
        if save_kv_cache:
            pool.set_kv_buffer(layer.layer_id, forward_batch.out_cache_loc, k, v)
        md: DecodeMetadata = forward_batch.attn_metadata
        num_heads, v_dim = layer.tp_q_head_num, layer.v_head_dim
        o = q.new_empty(q.shape[0], num_heads, v_dim)
        scratch = md.attn_logits
        if scratch.shape[1] != num_heads or scratch.shape[3] != v_dim + 1:
            scratch = None  # a layer shaped unlike the model's default (rare): the kernel allocates
        decode_attention_fwd(
            q.view(-1, num_heads, layer.qk_head_dim),
            pool.get_key_buffer(layer.layer_id),
            pool.get_value_buffer(layer.layer_id),
            o,
            self.req_to_token,
            md.req_pool_indices,
            md.seq_lens,
            sm_scale=layer.scaling,
            logit_cap=layer.logit_cap,
            sliding_window=layer.sliding_window_size,
            num_kv_splits=self.num_kv_splits,
            attn_logits=scratch,
        )
        return o.view(-1, num_heads * v_dim)

    # ------------------------------------------------------------------ CUDA graphs (decode only)
    def init_cuda_graph_state(self, max_bs: int) -> None:
        self.graph_attn_logits = decode_scratch(max_bs, self.num_q_heads, self.num_kv_splits, self.v_head_dim, self.device)

    def _graph_metadata(self, forward_batch: "ForwardBatch") -> None:
        if self.graph_attn_logits is None:
            raise RuntimeError("call init_cuda_graph_state(max_bs) before capturing CUDA graphs")
        if not forward_batch.forward_mode.is_decode():
            raise ValueError(f"CUDA graphs cover decode batches only, got {forward_batch.forward_mode.name}")
        bs = forward_batch.batch_size
        if bs > self.graph_attn_logits.shape[0]:
            raise ValueError(f"batch size {bs} exceeds the max_bs {self.graph_attn_logits.shape[0]} given to init_cuda_graph_state")
        # The graph runner passes its static input buffers; the kernels read them at replay time.
        forward_batch.attn_metadata = DecodeMetadata(
            forward_batch.req_pool_indices, forward_batch.seq_lens, self.graph_attn_logits[:bs]
        )

    def init_forward_metadata_capture(self, forward_batch: "ForwardBatch") -> None:
        self._graph_metadata(forward_batch)

    def init_forward_metadata_replay(self, forward_batch: "ForwardBatch") -> None:
        self._graph_metadata(forward_batch)
