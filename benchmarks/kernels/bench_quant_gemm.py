"""Quantized linear kernels at the Llama-3-8B layer shapes vs bf16 cuBLAS (GPU).

    python benchmarks/kernels/bench_quant_gemm.py --rows 1 4 16 64 128 256 --sweep --out r.json

For each shape (qkv, o, gate_up, down) and row count: microseconds and weight GB/s of bf16
F.linear, FP8 W8A8 (`fp8_linear`: the GEMV at <= 4 rows, else quantizer + _scaled_mm) and INT4
(`int4_linear`: the GEMV at <= 4 rows, the fused tl.dot kernel, or dequantize + cuBLAS), plus the
summed per-layer time (x 32 layers ~ the decode step's linear time). `--sweep` also times the
INT4 fused kernel's tile choices at each row count above 4 (the data behind `_gemm_config`) and
the FP8 GEMV's block shapes at one row (behind `fp8_gemv._block_config`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from typing import Dict, List

import torch
import torch.nn.functional as F
import triton

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}


def _time_us(fn) -> float:
    return triton.testing.do_bench(fn, warmup=10, rep=50) * 1000.0


def _int4_weights(n: int, k: int, group: int = 128):
    from sglang.runtime.layers.quantization.int4_math import gemv_layout, pack_nibbles

    q = torch.randint(0, 16, (n, k), device="cuda", dtype=torch.uint8)
    scales = torch.rand(n, k // group, device="cuda") * 0.02 + 0.001
    zeros = torch.randint(0, 16, (n, k // group), device="cuda", dtype=torch.uint8)
    g_idx = (torch.arange(k, device="cuda") // group).to(torch.int32)
    return pack_nibbles(q), scales, zeros, g_idx, gemv_layout(g_idx, group)


def bench_shape(name: str, n: int, k: int, rows: List[int], sweep: bool) -> List[Dict]:
    from sglang.kernels import int4_gemm
    from sglang.runtime.layers.quantization.fp8_math import fp8_linear, quantize_rows

    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
    wq, ws = quantize_rows(w)
    qw, s, z, g, layout = _int4_weights(n, k)
    out = []
    for m in rows:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        row = {"shape": name, "n": n, "k": k, "rows": m,
               "bf16_us": _time_us(lambda: F.linear(x, w)),
               "fp8_us": _time_us(lambda: fp8_linear(x, wq, ws, None, None, None)),
               "int4_us": _time_us(lambda: int4_gemm.int4_linear(x, qw, s, z, g, None, layout))}
        for kind, nbytes in (("bf16", 2 * n * k), ("fp8", n * k), ("int4", n * k // 2)):
            row[f"{kind}_gb_s"] = nbytes / row[f"{kind}_us"] / 1e3
        if sweep and m > int4_gemm.MAX_GEMV_ROWS:
            row["int4_fused_sweep"] = _sweep_fused(x, qw, s, z, layout, k)
        if sweep and m == 1:
            row["fp8_gemv_sweep"] = _sweep_fp8_gemv(x, wq, ws)
        out.append(row)
        print(f"{name:8s} m={m:4d} bf16 {row['bf16_us']:8.1f} us  fp8 {row['fp8_us']:8.1f}  int4 {row['int4_us']:8.1f}",
              flush=True)
    return out


def _sweep_fused(x, qw, s, z, layout, k) -> Dict[str, float]:
    from sglang.kernels import int4_gemm

    m, n = x.shape[0], qw.shape[0]
    y = torch.empty(m, n, device="cuda", dtype=x.dtype)
    group, first, step = layout
    res = {}
    for bm in sorted({max(16, triton.next_power_of_2(min(m, 128))), 64, 128}):
        for bn in (32, 64, 128):
            for bk, warps, stages in ((64, 4, 4), (128, 4, 3), (64, 8, 3)):
                if bk > group:
                    continue

                def run():
                    int4_gemm._gemm_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
                        x, qw, s, z, y, y, m, n, k, s.shape[1], first, step, x.stride(0), qw.stride(0), y.stride(0),
                        HAS_BIAS=False, GROUP=group, IEEE=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                        num_warps=warps, num_stages=stages)
                try:
                    res[f"bm{bm}_bn{bn}_bk{bk}_w{warps}_s{stages}"] = round(_time_us(run), 2)
                except Exception as e:  # a tile that does not fit shared memory
                    res[f"bm{bm}_bn{bn}_bk{bk}_w{warps}_s{stages}"] = f"error: {type(e).__name__}"
    return res


def _sweep_fp8_gemv(x, wq, ws) -> Dict[str, float]:
    """The FP8 GEMV's (BLOCK_N, BLOCK_K, warps, stages) at one row (the data behind _block_config)."""
    from sglang.kernels import fp8_gemv

    n, k = wq.shape
    y = torch.empty(1, n, device="cuda", dtype=x.dtype)
    scale = ws.reshape(n, -1)
    res = {}
    for bn, bk in ((4, 1024), (8, 512), (8, 1024), (16, 512), (16, 1024), (32, 256)):
        for warps, stages in ((4, 1), (4, 3), (8, 2), (8, 4)):
            def run():
                fp8_gemv._fp8_gemv_kernel[(1, triton.cdiv(n, bn))](
                    x, wq, scale, scale, y, y, n, k, scale.stride(0), x.stride(0), wq.stride(0), y.stride(0),
                    BLOCKWISE=False, STATIC=False, HAS_BIAS=False, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                    num_stages=stages)
            try:
                res[f"bn{bn}_bk{bk}_w{warps}_s{stages}"] = round(_time_us(run), 2)
            except Exception as e:  # a configuration that does not compile or fit
                res[f"bn{bn}_bk{bk}_w{warps}_s{stages}"] = f"error: {type(e).__name__}"
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 64, 128, 256])
    p.add_argument("--shape", choices=sorted(SHAPES), nargs="*", default=list(SHAPES))
    p.add_argument("--sweep", action="store_true", help="time the INT4 fused kernel's tile choices too")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    for name in args.shape:
        rows += bench_shape(name, *SHAPES[name], args.rows, args.sweep)
    layer = {}
    for m in args.rows:
        for kind in ("bf16", "fp8", "int4"):
            layer[f"m{m}_{kind}_layer_us"] = round(sum(r[f"{kind}_us"] for r in rows if r["rows"] == m), 1)
    print(json.dumps(layer, indent=1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"device": torch.cuda.get_device_name(), "date": datetime.date.today().isoformat(), "commit": commit,
              "command": "python benchmarks/kernels/bench_quant_gemm.py " + " ".join(
                  f"--rows {' '.join(map(str, args.rows))}".split() + (["--sweep"] if args.sweep else [])),
              "per_layer": layer, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
