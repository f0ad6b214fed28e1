"""Round-to-nearest INT4 of a loaded float model, in the INT4 method's layout (`int4.py`).

No calibration: each group of `group_size` inputs of each output row gets a scale and zero
point from its min and max (asymmetric, 16 levels), as AWQ's layout stores them. It gives the
INT4 path a real model to run on without a quantized checkpoint (accuracy benchmarks, tests);
AWQ and GPTQ choose better values for the same layout.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.layers.quantization.int4 import Int4Format, Int4LinearMethod
from sglang.runtime.layers.quantization.int4_math import pack_nibbles
from sglang.runtime.layers.quantization.loading import quantizable_linears


def rtn_int4(w: torch.Tensor, group_size: int):
    """float [N, K] -> (q uint8 [N, K], scales float32 [N, G], zeros uint8 [N, G])."""
    n, k = w.shape
    groups = F.pad(w.float(), (0, -k % group_size)).reshape(n, -1, group_size)
    lo, hi = groups.amin(dim=2).clamp(max=0), groups.amax(dim=2).clamp(min=0)
    scales = ((hi - lo) / 15).clamp(min=1e-8)
    zeros = torch.round(-lo / scales).clamp(0, 15)
    q = torch.clamp(torch.round(groups / scales[..., None]) + zeros[..., None], 0, 15)
    return q.reshape(n, -1)[:, :k].to(torch.uint8), scales, zeros.to(torch.uint8)


@torch.no_grad()
def quantize_model_int4_rtn(model: nn.Module, group_size: int = 128) -> List[nn.Module]:
    """Replace every linear layer's float weight by its RTN INT4 form; returns the layers."""
    layers = quantizable_linears(model)
    for layer in layers:
        q, scales, zeros = rtn_int4(layer.weight.data, group_size)
        with torch.device(layer.weight.device):  # the new parameters beside the old
            layer.set_quant_method(Int4LinearMethod(Int4Format("awq", group_size)))
        layer.qweight.data.copy_(pack_nibbles(q))
        layer.scales.data.copy_(scales)
        layer.qzeros.data.copy_(zeros)
    return layers
