"""Issue 19's GPU table from one device call's raw results (benchmarks/gpu/quant.sh writes them):
bench_one_batch lines (run names bf16 / fp8 / awq / fp8kv), offline-throughput lines and the
card's measured limits; ratios against bf16 of the same run and the fraction of the bandwidth
floor (weight bytes / step time / the card's copy bandwidth).

    python benchmarks/quantization/gpu_table.py --raw DIR --out benchmarks/results/F.json
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List, Optional

TARGETS = {"decode_bs1_ms_per_token_fp8": ("<=", 0.6), "decode_bs1_ms_per_token_int4": ("<=", 0.4),
           "decode_bs128_ms_per_step_fp8": ("<=", 0.8), "offline_256_256_output_tok_s_fp8": (">=", 1.3),
           "kv_capacity_tokens_fp8_kv": (">=", 1.9)}


def _lines(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _decode(rows: List[dict], name: str, bs: int) -> Optional[dict]:
    hits = [r for r in rows if r["run_name"] == name and r["batch_size"] == bs]
    return hits[-1] if hits else None


def _entry(value: float, base: float, key: str, floor_frac: Optional[float] = None) -> Dict:
    entry = {"value": round(value, 4), "bf16": round(base, 4), "ratio_vs_bf16": round(value / base, 3)}
    if key in TARGETS:
        op, target = TARGETS[key]
        entry["target"] = f"{op} {target} x bf16"
        entry["met"] = value / base <= target if op == "<=" else value / base >= target
    if floor_frac is not None:
        entry["fraction_of_bandwidth_floor"] = round(floor_frac, 3)
    return entry


def _floor_fraction(row: dict, copy_gbps: float) -> Optional[float]:
    """Weight-read time at the card's copy bandwidth over the measured step time."""
    if not copy_gbps or not row.get("weight_bytes"):
        return None
    return row["weight_bytes"] / (copy_gbps * 1e9) / row["median_decode_latency"]


def build(raw: str) -> Dict:
    card = json.load(open(os.path.join(raw, "card.json"))) if os.path.exists(os.path.join(raw, "card.json")) else {}
    copy = card.get("copy_gbps", 0.0)
    rows = _lines(os.path.join(raw, "one_batch.jsonl"))
    table: Dict[str, Dict] = {}
    for key, name, bs in (("decode_bs1_ms_per_token_fp8", "fp8", 1), ("decode_bs1_ms_per_token_int4", "awq", 1),
                          ("decode_bs128_ms_per_step_fp8", "fp8", 128), ("decode_bs1_ms_per_token_fp8_kv", "fp8kv", 1),
                          ("decode_bs128_ms_per_step_int4", "awq", 128)):
        row, base = _decode(rows, name, bs), _decode(rows, "bf16", bs)
        if row and base:
            table[key] = _entry(row["median_decode_latency"] * 1e3, base["median_decode_latency"] * 1e3, key,
                                _floor_fraction(row, copy))
            table[key]["bf16_fraction_of_bandwidth_floor"] = round(_floor_fraction(base, copy) or 0, 3)
            table[key]["weight_gb"] = round(row["weight_bytes"] / 1e9, 3)
    kv, base = _decode(rows, "fp8kv", 1), _decode(rows, "bf16", 1)
    if kv and base:
        table["kv_capacity_tokens_fp8_kv"] = _entry(kv["max_total_num_tokens"], base["max_total_num_tokens"],
                                                    "kv_capacity_tokens_fp8_kv")
    offline = {r["server_args"].get("quantization") or "bf16": r["sglang"] for r in _lines(os.path.join(raw, "offline.jsonl"))}
    if "fp8" in offline and "bf16" in offline:
        table["offline_256_256_output_tok_s_fp8"] = _entry(offline["fp8"]["output_tok_s"], offline["bf16"]["output_tok_s"],
                                                           "offline_256_256_output_tok_s_fp8")
    return {"card": card, "table": table, "raw_one_batch": rows, "raw_offline": offline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with card.json, one_batch.jsonl, offline.jsonl")
    parser.add_argument("--out", help="write the table here")
    parser.add_argument("--commit", default="", help="commit the figures come from")
    args = parser.parse_args()
    result = {"commit": args.commit, **build(args.raw)}
    print(json.dumps(result["table"], indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
