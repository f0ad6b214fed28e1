"""The `flashinfer` attention backend: FlashInfer's FA2 paged-KV kernels over our KV pool.

Chosen with `--attention-backend flashinfer` when the `flashinfer` package (flashinfer-python) is
installed; the registry hides it otherwise. The pool is read as a paged cache of one token per
page, in NHD layout: a layer's [slots, KVH, D] buffer viewed as [slots, 1, KVH, D]. Each batch
lists its pages as (kv_indptr, kv_indices): indptr from the host-side lengths, indices gathered
from the req_to_token rows on the device in one launch (`sglang.kernels.kv_indices`).

FlashInfer plans a batch on the host (work partition, split-KV) before its kernels run, and a
plan fixes the sliding window, the logit soft cap and the softmax scale. Layers are therefore
grouped into *kinds* by those three (one kind for most models; Gemma-2 has two), and every batch
plans one wrapper per kind in `init_forward_metadata`. Extend and MIXED batches first write their
new K/V into the pool, then attend over the whole sequence as one paged prefill with a causal
mask aligned to each sequence's end. Decode runs the CUDA-core decode kernel, or the tensor-core
prefill kernel with one query row when a KV head serves more than four query heads (its MMA tiles
fill better the larger the group; at four, Llama-3-8B on an H200, the CUDA-core kernel measured
7.86 vs 8.33 ms per bs-128 step and equal at bs 1). `SGLANG_FLASHINFER_DECODE_TENSOR_CORES=0|1`
overrides the choice (for measuring both).

CUDA graphs: one decode wrapper per kind and captured batch size, built with fixed index
buffers (shared by all of them; one graph runs at a time). A replay re-plans on the host and
rewrites the buffers before the graph launches; the graph runner puts the real batch's host
lengths (padded rows: 1) in the static batch so the plan matches the replayed rows.

A plan copies its work partition to the device from a pinned host buffer the wrapper owns, and
returns before that copy runs. Under overlap scheduling a wrapper may be planned again while the
batch it last planned is still queued, so each plan records an event and the next plan of the
same wrapper waits on it (in practice already passed: the scheduler read an earlier batch since).

Memory outside the KV budget (in the headroom `--mem-fraction-static` leaves): a 256 MiB float
workspace shared by all wrappers; 8 MiB of device and 8 MiB of pinned host memory per wrapper
(kinds x (captured sizes + 2)); and the graphs' index buffer, max_bs x context length x 4 bytes
(shared prefixes let a batch's total length exceed the pool, so the pool size is no bound).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import flashinfer
import torch

from sglang.kernels.kv_indices import gather_kv_indices
from sglang.runtime.host_device import host_to_device
from sglang.runtime.layers.attention.base import AttentionBackend
from sglang.runtime.layers.attention.radix_attention import RadixAttention

if TYPE_CHECKING:
    from sglang.runtime.model_executor.forward_batch import ForwardBatch

WORKSPACE_BYTES = 256 << 20  # split-KV partial results; FlashInfer recommends >= 128 MiB
TENSOR_CORE_MIN_GROUP = 5  # query heads per KV head from which tensor-core decode is used
CUDA_CORE_GROUPS = (1, 2, 3, 4, 6, 8, 16)  # group sizes FlashInfer's CUDA-core decode kernel has
TENSOR_CORE_ENV = "SGLANG_FLASHINFER_DECODE_TENSOR_CORES"
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class AttnKind:
    """What one FlashInfer plan fixes: layers that agree on these share a wrapper per batch."""

    window_left: int  # keys visible before the query's own position; -1: no window
    logit_cap: float
    scaling: float

    @classmethod
    def of(cls, layer: RadixAttention) -> "AttnKind":
        # Our window W counts the query's own position; FlashInfer's window_left does not.
        window = layer.sliding_window_size
        return cls(window - 1 if window else -1, float(layer.logit_cap or 0.0), float(layer.scaling))


def attention_kinds(model: Optional[torch.nn.Module]) -> Dict[int, AttnKind]:
    """layer_id -> kind for every RadixAttention in `model`."""
    if model is None:
        return {}
    return {m.layer_id: AttnKind.of(m) for m in model.modules() if isinstance(m, RadixAttention)}


def _num_q_heads_per_rank(model_runner) -> int:
    tp_size = getattr(getattr(model_runner, "server_args", None), "tp_size", 1) or 1
    return model_runner.model_config.num_attention_heads // tp_size


def _pinned_int32(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32).pin_memory()


class FlashInferAttnBackend(AttentionBackend):
    supports_cuda_graph = True

    def __init__(self, model_runner):
        if not str(model_runner.device).startswith("cuda"):
            raise ValueError(f"the flashinfer attention backend needs a CUDA device, got {model_runner.device!r}; "
                             "use --attention-backend torch_native on CPU")
        pool = model_runner.kv_pool
        self._check_config(pool, model_runner)
        self.device = model_runner.device
        self.req_to_token = model_runner.req_to_token_pool.req_to_token
        self.num_q_heads = _num_q_heads_per_rank(model_runner)
        self.num_kv_heads, self.head_dim, self.kv_dtype = pool.num_kv_heads, pool.head_dim, pool.dtype
        self.q_dtype = getattr(model_runner, "dtype", pool.dtype)
        self.use_tensor_cores = self._decode_tensor_cores(self.num_q_heads // self.num_kv_heads)
        self.layer_kinds = attention_kinds(getattr(model_runner, "model", None))
        self.kinds: List[AttnKind] = sorted(set(self.layer_kinds.values()), key=repr) or [
            AttnKind(-1, 0.0, self.head_dim**-0.5)]
        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=self.device)
        self.prefill_wrappers = {k: flashinfer.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD", backend="fa2")
                                 for k in self.kinds}
        self.decode_wrappers = {k: self._decode_wrapper() for k in self.kinds}
        self.graph_wrappers: Dict[int, Dict[AttnKind, object]] = {}
        self.graph_buffers: Optional[Dict[str, torch.Tensor]] = None
        self.plan_done: Dict[int, torch.cuda.Event] = {}  # id(wrapper) -> after its last plan's copy
        self.ones = _pinned_int32([])  # last_page_len of every request (one token per page), grown on demand

    @staticmethod
    def _check_config(pool, model_runner) -> None:
        dtype = getattr(model_runner, "dtype", pool.dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"the flashinfer attention backend runs float16/bfloat16 models, got {dtype}; "
                             "pass --dtype bfloat16 or use --attention-backend triton")
        if pool.dtype != dtype:
            raise ValueError(f"the flashinfer attention backend needs the KV cache in the model dtype ({dtype}), "
                             f"got {pool.dtype}; drop --kv-cache-dtype or use --attention-backend triton")
        if pool.v_head_dim != pool.head_dim:
            raise ValueError(f"the flashinfer attention backend needs equal K and V head dims, got "
                             f"{pool.head_dim} and {pool.v_head_dim}; use --attention-backend triton")

    @staticmethod
    def _decode_tensor_cores(group: int) -> bool:
        choice = os.environ.get(TENSOR_CORE_ENV, "auto")
        if choice not in ("auto", "0", "1"):
            raise ValueError(f"{TENSOR_CORE_ENV} must be auto, 0 or 1, got {choice!r}")
        if choice == "0" and group not in CUDA_CORE_GROUPS:
            raise ValueError(f"{TENSOR_CORE_ENV}=0: FlashInfer's CUDA-core decode has no kernel for {group} query "
                             f"heads per KV head (it has {CUDA_CORE_GROUPS}); unset it or set it to 1")
        return group >= TENSOR_CORE_MIN_GROUP if choice == "auto" else choice == "1"

    def _decode_wrapper(self, bs: Optional[int] = None):
        if bs is None:
            return flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                self.workspace, "NHD", use_tensor_cores=self.use_tensor_cores, backend="fa2")
        buf = self.graph_buffers
        return flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "NHD", use_cuda_graph=True, use_tensor_cores=self.use_tensor_cores,
            paged_kv_indptr_buffer=buf["indptr"][: bs + 1], paged_kv_indices_buffer=buf["indices"],
            paged_kv_last_page_len_buffer=buf["last_page_len"][:bs], backend="fa2")

    # ------------------------------------------------------------------ metadata
    def init_forward_metadata(self, forward_batch: "ForwardBatch") -> None:
        mode = forward_batch.forward_mode
        if mode.is_decode():
            forward_batch.attn_metadata = self._plan_decode(forward_batch, self.decode_wrappers)
        elif mode.is_extend():  # MIXED too: its decodes are extends of length 1
            forward_batch.attn_metadata = self._plan_extend(forward_batch)
        else:  # IDLE: nothing runs
            forward_batch.attn_metadata = None

    def _kv_pages(self, fb: "ForwardBatch", indices_out: Optional[torch.Tensor] = None):
        """(host kv_indptr, device kv_indices, host last_page_len) of the batch's sequences."""
        lens = fb.seq_lens_cpu
        if len(lens) != fb.batch_size:
            raise ValueError(f"seq_lens_cpu has {len(lens)} entries for a batch of {fb.batch_size}")
        indptr = _pinned_int32([0, *itertools.accumulate(lens)])
        total = int(indptr[-1])
        if indices_out is None:
            indices_out = torch.empty(total, dtype=torch.int32, device=self.device)
        elif total > indices_out.shape[0]:
            raise ValueError(f"{total} KV entries exceed the CUDA-graph index buffer ({indices_out.shape[0]})")
        gather_kv_indices(self.req_to_token, fb.req_pool_indices, host_to_device(indptr, self.device), indices_out,
                          max(lens, default=0))
        return indptr, indices_out[:total], self._last_page_len(fb.batch_size)

    def _last_page_len(self, bs: int) -> torch.Tensor:
        if self.ones.shape[0] < bs:
            self.ones = _pinned_int32([1] * max(bs, 2 * self.ones.shape[0]))
        return self.ones[:bs]

    def _plan_common(self, kind: AttnKind) -> dict:
        return dict(window_left=kind.window_left, logits_soft_cap=kind.logit_cap or None, sm_scale=kind.scaling,
                    q_data_type=self.q_dtype, kv_data_type=self.kv_dtype, non_blocking=True)

    def _plan_decode(self, fb: "ForwardBatch", wrappers: Dict[AttnKind, object],
                     indices_out: Optional[torch.Tensor] = None) -> Dict[AttnKind, object]:
        indptr, indices, last_page_len = self._kv_pages(fb, indices_out)
        for kind, wrapper in wrappers.items():
            self._plan(wrapper, indptr, indices, last_page_len, self.num_q_heads, self.num_kv_heads, self.head_dim,
                       1, **self._plan_common(kind))
        return wrappers

    def _plan_extend(self, fb: "ForwardBatch") -> Dict[AttnKind, object]:
        ext = fb.extend_seq_lens_cpu
        if ext is None:
            raise ValueError("an EXTEND/MIXED ForwardBatch needs extend_seq_lens_cpu")
        qo_indptr = _pinned_int32([0, *itertools.accumulate(ext)])
        indptr, indices, last_page_len = self._kv_pages(fb)
        for kind, wrapper in self.prefill_wrappers.items():
            self._plan(wrapper, qo_indptr, indptr, indices, last_page_len, self.num_q_heads, self.num_kv_heads,
                       self.head_dim, 1, causal=True, **self._plan_common(kind))
        return self.prefill_wrappers

    def _plan(self, wrapper, *args, **kwargs) -> None:
        """wrapper.plan, once the copy out of its pinned buffer queued by its previous plan has run."""
        done = self.plan_done.get(id(wrapper))
        if done is None:
            done = self.plan_done[id(wrapper)] = torch.cuda.Event()
        else:
            done.synchronize()
        wrapper.plan(*args, **kwargs)
        done.record()

    # ------------------------------------------------------------------ forward
    def _wrapper(self, layer: RadixAttention, fb: "ForwardBatch"):
        kind = self.layer_kinds.get(layer.layer_id) or AttnKind.of(layer)
        wrappers = fb.attn_metadata
        if wrappers is None or kind not in wrappers:
            raise RuntimeError(f"layer {layer.layer_id} ({kind}) was not planned for this batch: the backend was "
                               "built for another model, or init_forward_metadata was not called")
        return wrappers[kind]

    def _attend(self, q, layer: RadixAttention, fb: "ForwardBatch") -> torch.Tensor:
        pool = fb.kv_pool
        num_heads, head_dim = layer.tp_q_head_num, layer.qk_head_dim
        cache = (pool.get_key_buffer(layer.layer_id).unsqueeze(1), pool.get_value_buffer(layer.layer_id).unsqueeze(1))
        o = q.new_empty(q.shape[0], num_heads, layer.v_head_dim)
        self._wrapper(layer, fb).run(q.view(-1, num_heads, head_dim), cache, out=o)
        return o.view(-1, num_heads * layer.v_head_dim)

    def forward_extend(self, q, k, v, layer: RadixAttention, forward_batch: "ForwardBatch", save_kv_cache=True):
        if forward_batch.extend_visible_until is not None:
            # Per-token limits (Gemma 3's image tokens see their whole image) are no FlashInfer
            # mask; our Triton extend kernel takes them.
            from sglang.runtime.layers.attention.triton_backend import triton_extend

            return triton_extend(q, k, v, layer, forward_batch, self.req_to_token, save_kv_cache=save_kv_cache)
        # The new tokens' K/V go into the pool first: attention reads them as part of the sequence.
        return self._store_and_attend(q, k, v, layer, forward_batch, save_kv_cache)

    def forward_decode(self, q, k, v, layer: RadixAttention, forward_batch: "ForwardBatch", save_kv_cache=True):
        return self._store_and_attend(q, k, v, layer, forward_batch, save_kv_cache)

    def _store_and_attend(self, q, k, v, layer: RadixAttention, fb: "ForwardBatch", save_kv_cache: bool):
        if save_kv_cache:
            fb.kv_pool.set_kv_buffer(layer.layer_id, fb.out_cache_loc, k, v)
        return self._attend(q, layer, fb)

    # ------------------------------------------------------------------ CUDA graphs (decode only)
    def init_cuda_graph_state(self, max_bs: int) -> None:
        width = self.req_to_token.shape[1]  # a row holds one request's whole context
        self.graph_buffers = {
            "indptr": torch.zeros(max_bs + 1, dtype=torch.int32, device=self.device),
            "indices": torch.zeros(max_bs * width, dtype=torch.int32, device=self.device),
            "last_page_len": torch.ones(max_bs, dtype=torch.int32, device=self.device),
        }

    def _graph_wrappers(self, fb: "ForwardBatch") -> Dict[AttnKind, object]:
        if self.graph_buffers is None:
            raise RuntimeError("call init_cuda_graph_state(max_bs) before capturing CUDA graphs")
        if not fb.forward_mode.is_decode():
            raise ValueError(f"CUDA graphs cover decode batches only, got {fb.forward_mode.name}")
        bs = fb.batch_size
        if bs > self.graph_buffers["last_page_len"].shape[0]:
            raise ValueError(f"batch size {bs} exceeds the max_bs given to init_cuda_graph_state")
        if bs not in self.graph_wrappers:
            self.graph_wrappers[bs] = {k: self._decode_wrapper(bs) for k in self.kinds}
        return self.graph_wrappers[bs]

    def init_forward_metadata_capture(self, forward_batch: "ForwardBatch") -> None:
        wrappers = self._graph_wrappers(forward_batch)
        forward_batch.attn_metadata = self._plan_decode(forward_batch, wrappers, self.graph_buffers["indices"])

    def init_forward_metadata_replay(self, forward_batch: "ForwardBatch") -> None:
        if forward_batch.batch_size not in self.graph_wrappers:
            raise RuntimeError(f"no CUDA graph was captured for batch size {forward_batch.batch_size}")
        self.init_forward_metadata_capture(forward_batch)
