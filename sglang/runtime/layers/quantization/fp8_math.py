"""FP8 (float8_e4m3fn) arithmetic: rounding to FP8 with scales, and the W8A8 matmul.

Scales multiply: value = fp8 * scale. A weight's scale is stored one per output row ([out, 1]:
per-tensor and per-channel checkpoints alike; a per-tensor scale is repeated over its rows) or,
block-wise, one per (row, column block) ([out, ceil(in / block_k)]: the checkpoint's
[ceil(out / block_n), ceil(in / block_k)] grid repeated over the rows of each block, so fused
layers whose parts do not end on a block boundary still line up).

`fp8_linear` is the matmul: on CUDA, at up to four rows (decode) the Triton FP8 GEMV
(`sglang.kernels.fp8_gemv`, any scale layout), above that with per-row scales
`torch._scaled_mm` (Hopper and Ada) fed by a one-pass Triton activation quantizer; everywhere
else (the CPU, block-wise scales at many rows, shapes _scaled_mm refuses) its torch twin, which
rounds activations to FP8 exactly as the kernels' inputs are rounded and multiplies the
dequantized values in float32.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448
# An all-zero row still gets a finite scale (its values round to 0 either way).
MIN_SCALE = 1e-12


def to_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x / scale rounded to FP8 (nearest, saturating at +-448 instead of overflowing to NaN)."""
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)


def quantize_rows(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-row (per-token / per-channel) dynamic scales: (fp8 [M, K], scale float32 [M, 1])."""
    scale = (x.float().abs().amax(dim=-1, keepdim=True) / FP8_MAX).clamp(min=MIN_SCALE)
    return to_fp8(x, scale), scale


def quantize_tensor(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One scale for the whole tensor: (fp8, scale float32 [])."""
    scale = (x.float().abs().amax() / FP8_MAX).clamp(min=MIN_SCALE)
    return to_fp8(x, scale), scale


def quantize_blocks(w: torch.Tensor, block: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Block-wise weight scales as checkpoints store them: (fp8 [N, K], scale [ceil(N/bn), ceil(K/bk)])."""
    bn, bk = block
    n, k = w.shape
    padded = F.pad(w.float(), (0, -k % bk, 0, -n % bn))
    tiles = padded.reshape(padded.shape[0] // bn, bn, padded.shape[1] // bk, bk)
    scale = (tiles.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=MIN_SCALE)
    return to_fp8(w, expand_block_scale(scale, block, (n, k))), scale


def expand_block_scale(scale: torch.Tensor, block: Tuple[int, int], shape: Tuple[int, int]) -> torch.Tensor:
    """[ceil(N/bn), ceil(K/bk)] -> one scale per weight element [N, K]."""
    bn, bk = block
    return scale.repeat_interleave(bn, dim=0)[: shape[0]].repeat_interleave(bk, dim=1)[:, : shape[1]]


def dequantize(weight: torch.Tensor, scale: torch.Tensor, block_k: Optional[int]) -> torch.Tensor:
    """float32 [N, K] from FP8 and its stored scale (per row [N, 1], or per row and column block)."""
    if block_k is not None:
        scale = scale.repeat_interleave(block_k, dim=1)[:, : weight.shape[1]]
    return weight.float() * scale


def round_activations(x: torch.Tensor, block_k: Optional[int], static_scale: Optional[torch.Tensor]
                      ) -> torch.Tensor:
    """x (float32 [M, K]) as the FP8 GEMM sees it: rounded to FP8 with a static scale, a dynamic
    per-token scale, or (block-wise weights) a per-token scale for each block_k-column group."""
    if static_scale is not None:
        return to_fp8(x, static_scale).float() * static_scale
    if block_k is None:
        q, scale = quantize_rows(x)
        return q.float() * scale
    m, k = x.shape
    groups = F.pad(x, (0, -k % block_k)).reshape(m, -1, block_k)
    q, scale = quantize_rows(groups)
    return (q.float() * scale).reshape(m, -1)[:, :k]


def fp8_linear_twin(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block_k: Optional[int],
                    static_scale: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The W8A8 product in float32 (any device): FP8-rounded activations times the dequantized weight."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    y = round_activations(x2, block_k, static_scale) @ dequantize(weight, scale, block_k).t()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


def scaled_mm_supported(x: torch.Tensor, weight: torch.Tensor, block_k: Optional[int]) -> bool:
    """Whether torch._scaled_mm takes this product: CUDA, compute capability >= 8.9, per-row
    weight scales, and K, N multiples of 16 (its layout rule)."""
    if not x.is_cuda or block_k is not None or not hasattr(torch, "_scaled_mm"):
        return False
    n, k = weight.shape
    return torch.cuda.get_device_capability(x.device) >= (8, 9) and n % 16 == 0 and k % 16 == 0


def fp8_linear_cuda(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                    static_scale: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    """torch._scaled_mm with per-token activation scales and per-row weight scales (bf16 out)."""
    from sglang.kernels.fp8_gemv import quantize_rows_fp8  # Triton: imported only on CUDA

    x2 = x.reshape(-1, x.shape[-1])
    if static_scale is not None:
        xq, xs = to_fp8(x2, static_scale), static_scale.float().reshape(1, 1).expand(x2.shape[0], 1)
    else:
        xq, xs = quantize_rows_fp8(x2)
    # Row-wise scaling in _scaled_mm produces bfloat16 only; other dtypes are cast after.
    y = torch._scaled_mm(xq, weight.t(), scale_a=xs.contiguous(), scale_b=scale.float().reshape(1, -1),
                         out_dtype=torch.bfloat16, bias=None if bias is None else bias.to(torch.bfloat16))
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, block_k: Optional[int],
               static_scale: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    if x.is_cuda and weight.dtype == FP8_DTYPE and torch.cuda.get_device_capability(x.device) >= (8, 9):
        from sglang.kernels.fp8_gemv import MAX_GEMV_ROWS, fp8_gemv  # FP8 conversions need Ada / Hopper

        if x.numel() <= MAX_GEMV_ROWS * x.shape[-1] and (block_k is None or block_k & (block_k - 1) == 0):
            return fp8_gemv(x, weight, scale, block_k, static_scale, bias)
    if scaled_mm_supported(x, weight, block_k):
        return fp8_linear_cuda(x, weight, scale, static_scale, bias)
    return fp8_linear_twin(x, weight, scale, block_k, static_scale, bias)
