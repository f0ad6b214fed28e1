"""Reference attention backend in plain torch: runs on any device, used on CPU and as the oracle
for the Triton kernels.

Each layer first writes the new K/V into the pool at `out_cache_loc`, then reads every request's
whole sequence back through `req_to_token`, so cached prefixes and new tokens are treated alike.
A query at absolute position p sees key position k iff k <= p and, with a sliding window w,
p - k < w (the window counts the query's own position, as in transformers). In an extend pass a
model may raise the upper bound per token (`forward_batch.extend_visible_until`: Gemma 3's image
tokens see their whole image); the window still bounds keys from below.

Extend loops over requests (their lengths differ and SDPA wants dense tensors); decode runs every
step, so it pads the batch's K/V to the longest sequence and masks instead of looping. On CPU,
when the CPU path switched it on (`layers/cpu_kernels.py`), float32 decode instead runs one C++
call per layer that reads each request's K/V through req_to_token in place (no gather, no mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from sglang.runtime.layers.attention.base import AttentionBackend

if TYPE_CHECKING:
    from sglang.runtime.layers.attention.radix_attention import RadixAttention
    from sglang.runtime.model_executor.forward_batch import ForwardBatch

_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


# ---------------------------------------------------------------- pure attention math


def visibility_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: Optional[int],
                    q_limit: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bool [..., Lq, Lk]: causal (keys up to `q_limit` instead of the query's own position when
    given), and inside the sliding window when one is given."""
    dist = q_pos[..., :, None] - k_pos[..., None, :]
    visible = dist >= 0 if q_limit is None else k_pos[..., None, :] <= q_limit[..., :, None]
    if window:
        visible &= dist < window
    return visible


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
                      scale: float, logit_cap: float = 0.0) -> torch.Tensor:
    """Explicit attention with GQA grouping (no K/V head expansion) and optional soft-capping.

    q [B, H, Lq, D], k [B, KVH, Lk, D], v [B, KVH, Lk, Dv], mask bool broadcastable to
    [B, Lq, Lk] -> [B, H, Lq, Dv]. Scores are soft-capped before masking, softmax in float32."""
    b, h, lq, d = q.shape
    kvh = k.shape[1]
    qg = q.view(b, kvh, h // kvh, lq, d)
    scores = torch.matmul(qg, k.unsqueeze(2).transpose(-1, -2)) * scale
    if logit_cap:
        scores = logit_cap * torch.tanh(scores / logit_cap)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v.unsqueeze(2)).reshape(b, h, lq, v.shape[-1])


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
                   scale: float, is_causal: bool) -> torch.Tensor:
    """torch SDPA with GQA; shapes as in grouped_attention, mask [B, Lq, Lk] or None."""
    group = q.shape[1] // k.shape[1]
    kwargs: Dict[str, Any] = {"scale": scale, "is_causal": is_causal and mask is None}
    if mask is not None:
        kwargs["attn_mask"] = mask[:, None]
    if group > 1 and _SDPA_HAS_GQA:
        kwargs["enable_gqa"] = True
    elif group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


def _gather(buf: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """buf [num_slots, KVH, D] at slots [bs, L] -> [bs, L, KVH, D] (index_select beats fancy indexing)."""
    return buf.index_select(0, slots.reshape(-1)).view(*slots.shape, *buf.shape[1:])


# ---------------------------------------------------------------- per-batch metadata


@dataclass
class _ExtendSegment:
    q_start: int
    q_len: int
    prefix_len: int
    kv_slots: torch.Tensor  # [prefix_len + q_len] KV slots of the whole sequence
    masks: Dict[tuple, Optional[torch.Tensor]] = field(default_factory=dict)


@dataclass
class _DecodeMeta:
    kv_slots: torch.Tensor  # [bs, max_len], 0 (reserved slot) where padded
    distance: torch.Tensor  # [bs, max_len] query position - key position
    valid: torch.Tensor  # [bs, max_len] key exists
    masks: Dict[Optional[int], torch.Tensor] = field(default_factory=dict)


class TorchNativeAttnBackend(AttentionBackend):
    # The C++ CPU kernels module, set by `cpu_kernels.apply_cpu_kernels` (None: torch ops).
    cpu_ops = None

    def __init__(self, model_runner: Any):
        self.device = model_runner.device

    # ------------------------------------------------------------ metadata
    def init_forward_metadata(self, forward_batch: "ForwardBatch") -> None:
        mode = forward_batch.forward_mode
        if mode.is_decode() and self.decode_on_kernel(forward_batch.kv_pool.dtype):
            forward_batch.attn_metadata = None  # the kernel reads req_to_token itself
        elif mode.is_decode():
            forward_batch.attn_metadata = self._decode_meta(forward_batch)
        elif mode.is_extend():
            forward_batch.attn_metadata = self._extend_meta(forward_batch)
        else:
            forward_batch.attn_metadata = None

    @staticmethod
    def _extend_meta(fb: "ForwardBatch") -> List[_ExtendSegment]:
        rows = fb.req_to_token_pool.req_to_token[fb.req_pool_indices, : max(fb.seq_lens_cpu)]
        segments, start = [], 0
        for i, (q_len, prefix) in enumerate(zip(fb.extend_seq_lens_cpu, fb.extend_prefix_lens_cpu)):
            slots = rows[i, : prefix + q_len].long()
            segments.append(_ExtendSegment(start, q_len, prefix, slots))
            start += q_len
        return segments

    @staticmethod
    def _decode_meta(fb: "ForwardBatch") -> _DecodeMeta:
        max_len = max(fb.seq_lens_cpu)
        slots = fb.req_to_token_pool.req_to_token[fb.req_pool_indices, :max_len].long()
        k_pos = torch.arange(max_len, device=slots.device)
        valid = k_pos[None, :] < fb.seq_lens[:, None]
        distance = (fb.seq_lens[:, None] - 1) - k_pos[None, :]
        return _DecodeMeta(torch.where(valid, slots, torch.zeros_like(slots)), distance, valid)

    # ------------------------------------------------------------ helpers
    def decode_on_kernel(self, kv_dtype: torch.dtype) -> bool:
        """Whether decode attention runs the C++ kernel (also asked by `cpu_decode_step`)."""
        return self.cpu_ops is not None and kv_dtype == torch.float32

    @staticmethod
    def _save_kv(k: torch.Tensor, v: torch.Tensor, layer: "RadixAttention", fb: "ForwardBatch",
                 save_kv_cache: bool) -> None:
        if save_kv_cache:
            fb.kv_pool.set_kv_buffer(layer.layer_id, fb.out_cache_loc, k, v)

    @staticmethod
    def _segment_mask(seg: _ExtendSegment, window: Optional[int], explicit: bool,
                      limits: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Bool [1, Lq, Lk], or None when SDPA's is_causal suffices (no prefix, no effective
        window, no raised limits) and the caller accepts that (`explicit=False`). `limits`: the
        batch's `extend_visible_until` (the same for every layer of a pass)."""
        key = (window, explicit, limits is not None)
        if key not in seg.masks:
            total = seg.prefix_len + seg.q_len
            plain_causal = seg.prefix_len == 0 and (not window or window >= total) and limits is None
            if plain_causal and not explicit:
                seg.masks[key] = None
            else:
                device = seg.kv_slots.device
                q_pos = torch.arange(seg.prefix_len, total, device=device)
                q_limit = None if limits is None else limits[seg.q_start:seg.q_start + seg.q_len]
                seg.masks[key] = visibility_mask(q_pos, torch.arange(total, device=device), window, q_limit)[None]
        return seg.masks[key]

    # ------------------------------------------------------------ forward
    def forward_extend(self, q, k, v, layer: "RadixAttention", forward_batch: "ForwardBatch",
                       save_kv_cache: bool = True) -> torch.Tensor:
        self._save_kv(k, v, layer, forward_batch, save_kv_cache)
        k_buf = forward_batch.kv_pool.get_key_buffer(layer.layer_id)
        v_buf = forward_batch.kv_pool.get_value_buffer(layer.layer_id)
        h, d, dv = layer.tp_q_head_num, layer.qk_head_dim, layer.v_head_dim
        out = q.new_empty(q.shape[0], h * dv)
        for seg in forward_batch.attn_metadata:
            if seg.q_len == 0:
                continue
            qi = q[seg.q_start : seg.q_start + seg.q_len].view(seg.q_len, h, d).transpose(0, 1)
            ki, vi = forward_batch.kv_pool.read_kv(layer.layer_id, k_buf[seg.kv_slots], v_buf[seg.kv_slots], q.dtype)
            ki, vi = ki.transpose(0, 1), vi.transpose(0, 1)  # [KVH, Lk, D]
            # Soft-capping is not expressible in SDPA: that path needs the explicit mask.
            mask = self._segment_mask(seg, layer.sliding_window_size, explicit=bool(layer.logit_cap),
                                      limits=forward_batch.extend_visible_until)
            if layer.logit_cap:
                oi = grouped_attention(qi[None], ki[None], vi[None], mask, layer.scaling, layer.logit_cap)
            else:
                oi = sdpa_attention(qi[None], ki[None], vi[None], mask, layer.scaling, is_causal=True)
            out[seg.q_start : seg.q_start + seg.q_len] = oi[0].transpose(0, 1).reshape(seg.q_len, h * dv)
        return out

    def forward_decode(self, q, k, v, layer: "RadixAttention", forward_batch: "ForwardBatch",
                       save_kv_cache: bool = True) -> torch.Tensor:
        self._save_kv(k, v, layer, forward_batch, save_kv_cache)
        if (self.decode_on_kernel(forward_batch.kv_pool.dtype) and q.dtype == torch.float32
                and layer.v_head_dim == layer.qk_head_dim):
            return self.cpu_ops.decode_attention(
                q.reshape(q.shape[0], -1), forward_batch.kv_pool.get_key_buffer(layer.layer_id),
                forward_batch.kv_pool.get_value_buffer(layer.layer_id), forward_batch.req_to_token_pool.req_to_token,
                forward_batch.req_pool_indices, forward_batch.seq_lens, layer.qk_head_dim, layer.scaling,
                layer.sliding_window_size or 0, layer.logit_cap or 0.0, True)
        if forward_batch.attn_metadata is None:  # skipped for the kernel, which this layer cannot take
            forward_batch.attn_metadata = self._decode_meta(forward_batch)
        meta: _DecodeMeta = forward_batch.attn_metadata
        window = layer.sliding_window_size
        if window not in meta.masks:
            meta.masks[window] = meta.valid & (meta.distance < window) if window else meta.valid
        bs = q.shape[0]
        h, d, dv = layer.tp_q_head_num, layer.qk_head_dim, layer.v_head_dim
        # [bs, max_len, KVH, D] -> [bs, KVH, max_len, D]
        pool = forward_batch.kv_pool
        kb, vb = pool.read_kv(layer.layer_id, _gather(pool.get_key_buffer(layer.layer_id), meta.kv_slots),
                              _gather(pool.get_value_buffer(layer.layer_id), meta.kv_slots), q.dtype)
        kb, vb = kb.transpose(1, 2), vb.transpose(1, 2)
        mask = meta.masks[window][:, None, :]  # [bs, 1 (query), max_len]
        if layer.logit_cap:  # soft-capping is not expressible in SDPA
            out = grouped_attention(q.view(bs, h, 1, d), kb, vb, mask, layer.scaling, layer.logit_cap)
        else:  # SDPA's fused CPU/GPU kernels are several times faster than explicit matmuls here
            out = sdpa_attention(q.view(bs, h, 1, d), kb, vb, mask, layer.scaling, is_causal=False)
        return out.reshape(bs, h * dv)
