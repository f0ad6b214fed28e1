"""The GGUF block kernel against torch on one model's linear layers (CPU).

    python benchmarks/kernels/bench_gguf_gemm_cpu.py [--model-path F.gguf] [--rows 1 4 16 64] [--out F]

For each row count M: the time of all the model's linear layers once (what one step's matmuls
cost), for the block kernel on the file's own blocks, the kernel's dequantize-then-GEMM path,
float32 F.linear on the dequantized weights, bfloat16 F.linear, and torch's int8 weight-only
matmul on the same weights re-quantized per row. Each with the bytes it reads and the GB/s
that implies. Median of --repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from sglang.benchmark.result_file import result_header, write_result
from sglang.kernels.cpu.gguf import gguf_extension
from sglang.kernels.ref.gguf_quant import gguf_dequantize


def _layers(path: str) -> List[tuple]:
    """(name, qtype id, uint8 blocks) of every 2-D block tensor in the file."""
    from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint

    ckpt = GGUFCheckpoint(path)
    out = []
    for record in ckpt.tensors:
        if len(ckpt.logical_shape(record.name)) == 2 and record.tensor_type.value in (2, 3, 8):
            out.append((record.name, record.tensor_type.value, torch.from_numpy(record.data.copy())))
    return out


def _median_ms(fn: Callable[[], None], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _int8_weights(dense: List[torch.Tensor]) -> List[tuple]:
    out = []
    for w in dense:
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127
        out.append(((w / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale))
    return out


def bench(path: str, rows: List[int], repeats: int, skip_lm_head: bool) -> Dict:
    ext = gguf_extension()
    layers = [entry for entry in _layers(path) if not (skip_lm_head and entry[0] == "token_embd.weight")]
    dense = [gguf_dequantize(w, q) for _, q, w in layers]
    bf16 = [w.to(torch.bfloat16) for w in dense]
    int8 = _int8_weights(dense)
    nbytes = {"blocks": sum(w.numel() for _, _, w in layers), "float32": sum(w.numel() * 4 for w in dense),
              "bfloat16": sum(w.numel() * 2 for w in dense), "int8": sum(w.numel() for w, _ in int8)}
    results = []
    for m in rows:
        xs = {w.shape[1]: torch.randn(m, w.shape[1]) for w in dense}
        cases = {
            "blocks_kernel": ("blocks", lambda: [ext.gguf_gemm(xs[d.shape[1]], w, q, None, True)
                                                 for (_, q, w), d in zip(layers, dense)]),
            "blocks_dequant_then_gemm": ("blocks", lambda: [F.linear(xs[d.shape[1]], ext.gguf_dequantize(w, q, d.shape[1], True))
                                                            for (_, q, w), d in zip(layers, dense)]),
            "float32_linear": ("float32", lambda: [F.linear(xs[w.shape[1]], w) for w in dense]),
            "bfloat16_linear": ("bfloat16", lambda: [F.linear(xs[w.shape[1]].bfloat16(), w) for w in bf16]),
            "int8_weight_only": ("int8", lambda: [torch._weight_int8pack_mm(xs[w.shape[1]], w, s) for w, s in int8]),
        }
        row = {"rows": m}
        for name, (kind, fn) in cases.items():
            ms = _median_ms(fn, repeats)
            row[name] = {"ms": round(ms, 2), "GBps": round(nbytes[kind] / ms / 1e6, 1)}
        results.append(row)
    return {"layers": len(layers), "MB": {k: round(v / 1e6, 1) for k, v in nbytes.items()}, "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-lm-head", action="store_true", help="leave the (tied) embedding out")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model_path is None:
        from sglang.testing.models import smollm2_gguf_path

        args.model_path = str(smollm2_gguf_path(fetch=False))
    record = {**result_header("benchmarks/kernels/bench_gguf_gemm_cpu.py", "cpu"), "threads": torch.get_num_threads(),
              **bench(args.model_path, args.rows, args.repeats, args.skip_lm_head)}
    write_result(record, args.out)


if __name__ == "__main__":
    main()
