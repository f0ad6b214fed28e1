"""A Llama-style decoder layer's decode step on CPU as a straight run of C++ kernel calls.

With the CPU kernels on (`cpu_kernels.py`) and GGUF blocks (`--quantization gguf`), a decode step
of a small model spends about a third of its time in Python: module calls, the quantization
method's indirection, views and checks, roughly 130 us per layer on a 2-core machine. A layer's
decode is always the same nine kernels (norm, qkv, rotary + KV write, attention, o, add + norm,
gate_up, SiLU-mul, down), so `CpuDecodeStep` binds a layer's tensors once and calls the kernels
in that order directly: the same kernels, in the same order, on the same tensors as the module
path, so the results are bit-identical (tests/engine/test_cpu_decode_step.py).

A model takes this path only when every layer qualifies (`plan_decode_steps`): plain RMSNorms,
SiLU-mul and rotary with the kernels switched on, no q/k transform (Qwen3's q/k norms take the
module path), every linear on GGUF blocks or unquantized float32, float32 activations, one rank.
Each step checks that the batch is a decode whose attention the kernel serves; anything else
runs the modules.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.layers.activation import SiluAndMul
from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.layers.mrope import MRotaryEmbedding
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding

logger = logging.getLogger(__name__)

# Rotary classes whose one-position-per-token path is plain RoPE (M-RoPE's is: decode positions are
# 1D, its three components equal), so the C++ rotary kernel computes exactly what they do there.
PLAIN_ROTARY = (RotaryEmbedding, MRotaryEmbedding)

Linear = Callable[[torch.Tensor], torch.Tensor]


def _direct_linear(ops: Any, layer: nn.Module) -> Optional[Linear]:
    """x -> layer(x) without the module call, or None when the layer's method is not one we bind."""
    from sglang.runtime.layers.quantization.gguf import GGUFLinearMethod
    from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod

    # The layer's tensors are read at each call, so weights replaced in place or reassigned
    # (a weight update) are seen.
    if getattr(layer, "tp_size", 1) != 1:
        return None
    method = layer.quant_method
    if type(method) is GGUFLinearMethod:
        qtype = method.qtype
        return lambda x: ops.gguf_gemm(x, layer.weight, qtype, layer.bias, True)
    if type(method) is UnquantizedLinearMethod and layer.weight.dtype == torch.float32:
        return lambda x: F.linear(x, layer.weight, layer.bias)
    return None


class CpuDecodeStep:
    """One decoder layer's decode step (see module docstring); `None` from `build` if it cannot."""

    def __init__(self, layer: nn.Module, linears: Tuple[Linear, Linear, Linear, Linear]):
        attn = layer.self_attn
        self.in_norm, self.post_norm = layer.input_layernorm, layer.post_attention_layernorm
        self.qkv, self.o, self.gate_up, self.down = linears
        self.rotary: RotaryEmbedding = attn.rotary_emb
        self.radix = attn.attn
        self.split = [attn.q_size, attn.kv_size, attn.kv_size]

    @classmethod
    def build(cls, ops: Any, layer: nn.Module) -> Optional["CpuDecodeStep"]:
        from sglang.runtime.models.llama import LlamaAttention

        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if (attn is None or mlp is None  # latent attention (DeepSeek) has no transform_qk: module path
                or getattr(type(attn), "transform_qk", None) is not LlamaAttention.transform_qk):
            return None
        norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
        if not all(type(n) is RMSNorm and n.cpu_ops is not None for n in norms):
            return None
        act_fn = getattr(mlp, "act_fn", None)  # mixture-of-experts blocks have none
        if type(act_fn) is not SiluAndMul or act_fn.cpu_ops is None:
            return None
        if type(attn.rotary_emb) not in PLAIN_ROTARY or attn.rotary_emb.cpu_ops is None:
            return None
        if attn.attn.v_head_dim != attn.attn.qk_head_dim:
            return None
        linears = tuple(_direct_linear(ops, m) for m in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj))
        if any(fn is None for fn in linears):
            return None
        return cls(layer, linears)  # type: ignore[arg-type]

    def __call__(self, positions: torch.Tensor, hidden: torch.Tensor, fb: Any,
                 residual: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        ops, radix = fb.attn_backend.cpu_ops, self.radix  # the module the CPU path switched on
        if residual is None:
            residual = hidden
            h = ops.rms_norm(hidden, None, self.in_norm.weight, self.in_norm.variance_epsilon, True)
        else:
            h = ops.rms_norm(hidden, residual, self.in_norm.weight, self.in_norm.variance_epsilon, True)
        q, k, v = self.qkv(h).split(self.split, dim=-1)
        pool, layer_id = fb.kv_pool, radix.layer_id
        k_buf, v_buf = pool.get_key_buffer(layer_id), pool.get_value_buffer(layer_id)
        rotary = self.rotary
        ops.rope_store_kv(positions, q, k, v, rotary.cos_cache, rotary.sin_cache, rotary.head_size,
                          k_buf, v_buf, fb.out_cache_loc, True)
        attn = ops.decode_attention(q, k_buf, v_buf, fb.req_to_token_pool.req_to_token, fb.req_pool_indices,
                                    fb.seq_lens, radix.qk_head_dim, radix.scaling, radix.sliding_window_size or 0,
                                    radix.logit_cap or 0.0, True)
        h = ops.rms_norm(self.o(attn), residual, self.post_norm.weight, self.post_norm.variance_epsilon, True)
        return self.down(ops.silu_and_mul(self.gate_up(h), True)), residual


def plan_decode_steps(ops: Any, layers: nn.ModuleList) -> Optional[List[CpuDecodeStep]]:
    """One step per layer, or None (logged) when any layer must keep the module path."""
    steps = [CpuDecodeStep.build(ops, layer) for layer in layers]
    if not steps or any(s is None for s in steps):
        logger.info("CPU decode steps not used: a layer needs the module path (q/k transform, other norm, "
                    "activation, quantization or dtype)")
        return None
    return steps  # type: ignore[return-value]


def serves(steps: Optional[List[CpuDecodeStep]], fb: Any, hidden: torch.Tensor) -> bool:
    """Whether this batch takes the steps: a decode, float32, attention on the CPU kernel."""
    if steps is None or not fb.forward_mode.is_decode() or hidden.dtype != torch.float32:
        return False
    on_kernel = getattr(fb.attn_backend, "decode_on_kernel", None)  # torch_native only
    return on_kernel is not None and on_kernel(fb.kv_pool.dtype)
