"""Tiny quantized checkpoints in the Hub's published layouts, written from a float checkpoint.

`write_quantized(src_dir, out_dir, fmt, **options)` quantizes every decoder linear weight
(2-D `.weight` tensors under `model.layers` except MoE routers and norms) of a float checkpoint (e.g. `tiny_model_dir("llama")`)
and writes the checkpoint the way the format's producers do, with config.json's
`quantization_config`. It also writes `out_dir/dequantized/`: the same model with float32
weights equal to the quantized values, the reference the loader's results are checked against.

Formats (`fmt`):
- "fp8-tensor": AutoFP8 style; `weight` float8_e4m3fn, scalar `weight_scale`, scalar
  `input_scale` when `static=True` (activation_scheme static) else dynamic.
- "fp8-block": DeepSeek-V3 / Qwen3-FP8 style; `weight_scale_inv` [ceil(N/bn), ceil(K/bk)],
  `weight_block_size` [bn, bk] (option `block`, default (128, 128)).
- "ct-channel" / "ct-tensor" / "ct-block": compressed-tensors FP8 (`weight_scale` [N, 1], [1],
  or the block grid), dynamic per-token activations.
Option `keep_float=("down_proj",)` leaves those layers in float and lists them as unquantized.

This is test code written from the formats' descriptions, independently of the loader.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Dict, Tuple

import torch
from safetensors.torch import load_file, save_file

Tensors = Dict[str, torch.Tensor]
FP8 = torch.float8_e4m3fn
E4M3_MAX = 448.0


def is_quantized_linear(name: str, tensor: torch.Tensor) -> bool:
    """Decoder projections (incl. experts and DeepSeek's `kv_a_proj_with_mqa`); MoE routers
    (`mlp.gate`, `shared_expert_gate`) and norms stay float, as in published FP8 checkpoints."""
    return (name.startswith("model.layers.") and name.endswith(".weight") and tensor.dim() == 2
            and not name.endswith("gate.weight") and "norm" not in name)


def _fp8_with(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.clamp(w / scale, -E4M3_MAX, E4M3_MAX).to(FP8)


def fp8_tensor(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fp8 weight, scalar scale, dequantized float32)."""
    scale = torch.clamp(w.abs().max() / E4M3_MAX, min=1e-12)
    q = _fp8_with(w, scale)
    return q, scale.reshape(()), q.float() * scale


def fp8_channel(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scale = torch.clamp(w.abs().amax(dim=1, keepdim=True) / E4M3_MAX, min=1e-12)
    q = _fp8_with(w, scale)
    return q, scale, q.float() * scale


def fp8_block(w: torch.Tensor, block: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block by block, as the producers loop: one scale per [bn, bk] tile (edge tiles smaller)."""
    bn, bk = block
    n, k = w.shape
    grid = torch.empty(-(-n // bn), -(-k // bk))
    q = torch.empty(n, k, dtype=FP8)
    deq = torch.empty(n, k)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            tile = w[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk]
            s = torch.clamp(tile.abs().max() / E4M3_MAX, min=1e-12)
            grid[i, j] = s
            qt = _fp8_with(tile, s)
            q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = qt
            deq[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = qt.float() * s
    return q, grid, deq


def _fp8_writer(fmt: str, block: Tuple[int, int], static: bool, input_amax: float
                ) -> Callable[[str, torch.Tensor, Tensors], torch.Tensor]:
    def write(name: str, w: torch.Tensor, out: Tensors) -> torch.Tensor:
        base = name[: -len(".weight")]
        if fmt in ("fp8-tensor", "ct-tensor"):
            q, scale, deq = fp8_tensor(w)
            out[base + ".weight_scale"] = scale if fmt == "fp8-tensor" else scale.reshape(1)
        elif fmt == "ct-channel":
            q, scale, deq = fp8_channel(w)
            out[base + ".weight_scale"] = scale
        else:
            q, scale, deq = fp8_block(w, block)
            out[base + (".weight_scale_inv" if fmt == "fp8-block" else ".weight_scale")] = scale
        out[base + ".weight"] = q
        if static:
            # Distinct per part, so a loader that keeps only the last of a fused layer's parts differs.
            out[base + ".input_scale"] = torch.tensor(input_amax / E4M3_MAX * (1 + 0.1 * (len(base) % 3)))
        return deq
    return write


def fp8_quantization_config(fmt: str, block: Tuple[int, int], static: bool) -> Dict[str, Any]:
    if fmt == "fp8-tensor":
        return {"quant_method": "fp8", "activation_scheme": "static" if static else "dynamic"}
    if fmt == "fp8-block":
        return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": list(block)}
    strategy = fmt[len("ct-"):]
    weights: Dict[str, Any] = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False,
                               "strategy": strategy}
    if strategy == "block":
        weights["block_structure"] = list(block)
    return {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": {
                "num_bits": 8, "type": "float", "symmetric": True, "dynamic": True, "strategy": "token"}}}}


FP8_FORMATS = ("fp8-tensor", "fp8-block", "ct-channel", "ct-tensor", "ct-block")


def _writer_and_config(fmt: str, options: Dict[str, Any]):
    if fmt in FP8_FORMATS:
        block = tuple(options.get("block", (128, 128)))
        static = bool(options.get("static", False))
        return (_fp8_writer(fmt, block, static, float(options.get("input_amax", 8.0))),
                fp8_quantization_config(fmt, block, static))
    from sglang.testing.tiny_int4 import int4_writer_and_config

    return int4_writer_and_config(fmt, options)


def _copy_side_files(src_dir: str, out_dir: str) -> None:
    for name in os.listdir(src_dir):
        path = os.path.join(src_dir, name)
        if os.path.isfile(path) and not name.endswith(".safetensors") and not name.endswith(".index.json"):
            shutil.copy(path, os.path.join(out_dir, name))


def _read_tensors(src_dir: str) -> Tensors:
    tensors: Tensors = {}
    for name in sorted(os.listdir(src_dir)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(src_dir, name)))
    return tensors


def write_quantized(src_dir: str, out_dir: str, fmt: str, **options: Any) -> str:
    """Write `out_dir` (the quantized checkpoint) and `out_dir/dequantized` (its float twin)."""
    write, quant_config = _writer_and_config(fmt, options)
    keep_float = tuple(options.get("keep_float", ()))  # e.g. ("down_proj",): left float and listed
    if keep_float:
        key = "ignore" if "ignore" in quant_config else "modules_to_not_convert"
        quant_config[key] = list(quant_config.get(key, [])) + [f"re:.*{part}$" for part in keep_float]
    tensors = _read_tensors(src_dir)
    quantized: Tensors = {}
    dequantized: Tensors = {}
    for name, tensor in tensors.items():
        if is_quantized_linear(name, tensor) and not any(f".{part}." in name for part in keep_float):
            dequantized[name] = write(name, tensor.float(), quantized).contiguous()
        else:
            quantized[name] = dequantized[name] = tensor
    ref_dir = os.path.join(out_dir, "dequantized")
    for directory, data, qc in ((out_dir, quantized, quant_config), (ref_dir, dequantized, None)):
        os.makedirs(directory, exist_ok=True)
        _copy_side_files(src_dir, directory)
        save_file({k: v.contiguous() for k, v in data.items()}, os.path.join(directory, "model.safetensors"),
                  metadata={"format": "pt"})
        with open(os.path.join(src_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        if qc is not None:
            config["quantization_config"] = qc
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
    return out_dir
