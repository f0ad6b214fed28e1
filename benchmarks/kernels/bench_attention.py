"""Attention-kernel microbenchmark (GPU): decode at the Llama-3-8B shape, plus a few extend shapes.

Decode: 32 q heads, 8 kv heads, head_dim 128, bf16, KV slots scattered at random through the pool
(as after many allocations and frees). Decode is bound by reading K and V once, so the figure of
merit is KV bytes read / median time against the copy bandwidth of the card (~3000 GB/s on H100).
Extend: causal prefill on an optional cached prefix, reported as attention TFLOP/s.
Timing: triton.testing.do_bench (events, L2 flushed between runs), median.

    PYTHONPATH=. python benchmarks/kernels/bench_attention.py --out benchmarks/results/kernels_<date>.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import List

import torch
import triton
from triton.testing import do_bench

from sglang.kernels.decode_attention import decode_attention_fwd, decode_scratch
from sglang.kernels.extend_attention import extend_attention_fwd

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
DTYPE = torch.bfloat16


def _paged_pool(bs: int, seq: int, gen: torch.Generator):
    """K/V pools holding bs * seq tokens at a random permutation of slots (slot 0 reserved)."""
    tokens = bs * seq
    k = torch.randn(tokens + 1, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v = torch.randn(tokens + 1, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    slots = (torch.randperm(tokens, generator=gen) + 1).to(torch.int32).view(bs, seq)
    return k, v, slots.cuda()


def bench_decode(bs: int, seq: int, num_kv_splits: int, peak_gbps: float) -> dict:
    gen = torch.Generator().manual_seed(bs * 100003 + seq)
    k, v, table = _paged_pool(bs, seq, gen)
    q = torch.randn(bs, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    o = torch.empty_like(q)
    rows = torch.arange(bs, device="cuda")
    seq_lens = torch.full((bs,), seq, device="cuda")
    scratch = decode_scratch(bs, HEADS, num_kv_splits, HEAD_DIM, "cuda")

    def run():
        decode_attention_fwd(q, k, v, o, table, rows, seq_lens, HEAD_DIM**-0.5,
                             num_kv_splits=num_kv_splits, attn_logits=scratch)

    run()
    torch.cuda.synchronize()
    ms = do_bench(run, warmup=25, rep=100, return_mode="median")
    kv_bytes = bs * seq * KV_HEADS * HEAD_DIM * 2 * k.element_size()
    gbps = kv_bytes / (ms * 1e-3) / 1e9
    return {"kind": "decode", "bs": bs, "seq_len": seq, "num_kv_splits": num_kv_splits, "median_ms": round(ms, 5),
            "kv_bytes": kv_bytes, "kv_gbps": round(gbps, 1), "fraction_of_peak": round(gbps / peak_gbps, 3)}


def bench_extend(bs: int, prefix: int, extend: int) -> dict:
    gen = torch.Generator().manual_seed(bs * 7 + prefix + extend)
    k_buf, v_buf, table = _paged_pool(bs, max(prefix, 1), gen)
    n = bs * extend
    q = torch.randn(n, HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    k = torch.randn(n, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    v = torch.randn(n, KV_HEADS, HEAD_DIM, device="cuda", dtype=DTYPE)
    o = torch.empty_like(q)
    ext = torch.full((bs,), extend, device="cuda")
    seq_lens = ext + prefix
    start = torch.arange(bs, device="cuda") * extend
    rows = torch.arange(bs, device="cuda")

    def run():
        extend_attention_fwd(q, k, v, o, k_buf, v_buf, table, rows, seq_lens, ext, start, extend, HEAD_DIM**-0.5)

    run()
    torch.cuda.synchronize()
    ms = do_bench(run, warmup=25, rep=100, return_mode="median")
    # visible keys per query: the prefix plus the causal part of the extend (i + 1 for the i-th new token)
    pairs = bs * (extend * prefix + extend * (extend + 1) // 2)
    flops = 4 * HEADS * HEAD_DIM * pairs  # QK^T and PV, 2 flops per multiply-add
    return {"kind": "extend", "bs": bs, "prefix_len": prefix, "extend_len": extend, "median_ms": round(ms, 5),
            "tflops": round(flops / (ms * 1e-3) / 1e12, 1)}


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--commit", default="unknown", help="git commit of the code measured (the GPU host has no .git)")
    parser.add_argument("--peak-gbps", type=float, default=3000.0, help="memory bandwidth to compare against")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[128, 1024, 4096])
    parser.add_argument("--splits", type=int, nargs="+", default=[8, 32], help="num_kv_splits values to time")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_attention needs a CUDA GPU")

    cases = [(bench_decode, (bs, seq, s, args.peak_gbps)) for bs in args.batch_sizes for seq in args.seq_lens for s in args.splits]
    cases += [(bench_extend, shape) for shape in ((1, 0, 4096), (8, 1536, 512), (32, 0, 256))]
    print(f"{'kind':7}{'bs':>5}{'seq':>7}{'splits':>7}{'ms':>10}{'GB/s':>9}{'peak':>7}{'TFLOP/s':>9}", flush=True)
    results = []
    for fn, case_args in cases:  # print each row as measured so a later failure loses nothing
        r = fn(*case_args)
        results.append(r)
        seq = r.get("seq_len", r.get("extend_len"))
        print(f"{r['kind']:7}{r['bs']:>5}{seq:>7}{r.get('num_kv_splits', ''):>7}{r['median_ms']:>10.4f}"
              f"{r.get('kv_gbps', ''):>9}{r.get('fraction_of_peak', ''):>7}{r.get('tflops', ''):>9}", flush=True)
    if args.out:
        record = {
            "benchmark": "benchmarks/kernels/bench_attention.py",
            "device": torch.cuda.get_device_name(),
            "date": datetime.date.today().isoformat(),
            "commit": args.commit,
            "command": "python3 benchmarks/kernels/bench_attention.py " + " ".join(argv),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "shape": {"q_heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "dtype": "bfloat16"},
            "timing": "triton.testing.do_bench median, L2 flushed between runs",
            "peak_gbps_reference": args.peak_gbps,
            "results": results,
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
