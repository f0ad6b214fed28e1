"""Turn per-request measurements into the serving benchmark's summary and its printed table.

Definitions (upstream's):
- TTFT: request sent -> first chunk that carried output.
- ITL: gaps between output chunks, a k-token chunk's gap split into k equal latencies.
- TPOT: per request (E2E - TTFT) / (output tokens - 1), for requests with >= 2 output tokens.
- concurrency: sum of E2E latencies / benchmark duration (mean requests in flight).
Latency figures are reported in milliseconds with keys like `mean_ttft_ms`, `p99_itl_ms`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from sglang.benchmark.request_record import RequestOutput, split_chunk_latencies

LATENCY_NAMES = ("ttft", "tpot", "itl", "e2e_latency")
_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e_latency": "E2E Latency"}


def finalize_output(out: RequestOutput, count_tokens: Callable[[str], int]) -> None:
    """Fill output_len (server count, else re-tokenized text), TTFT and ITL of one request."""
    if not out.success:
        return
    if out.server_output_len is not None:
        out.output_len = out.server_output_len
    else:
        out.output_len = count_tokens(out.generated_text)
    out.ttft, out.itl = split_chunk_latencies(out.chunks, out.start_time)
    if not out.chunks:
        out.ttft = out.latency  # nothing streamed: the whole answer is the first "token"


def latency_stats(values_s: Sequence[float]) -> Dict[str, float]:
    """mean/median/std/p99 in milliseconds; zeros for an empty list (e.g. all outputs 1 token)."""
    if len(values_s) == 0:
        return {"mean": 0.0, "median": 0.0, "std": 0.0, "p99": 0.0}
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "std": float(ms.std()),
            "p99": float(np.percentile(ms, 99))}


def summarize(outputs: List[RequestOutput], duration: float) -> dict:
    """The metrics dict: counts, throughputs, latency statistics and concurrency."""
    if duration <= 0:
        raise ValueError(f"benchmark duration must be positive, got {duration}")
    ok = [o for o in outputs if o.success]
    failed = [o for o in outputs if not o.success]
    total_input = sum(o.prompt_len for o in ok)
    total_output = sum(o.output_len for o in ok)
    series = {
        "ttft": [o.ttft for o in ok],
        "tpot": [t for t in (o.tpot for o in ok) if t is not None],
        "itl": [x for o in ok for x in o.itl],
        "e2e_latency": [o.latency for o in ok],
    }
    metrics: dict = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(failed),
        "first_error": failed[0].error if failed else "",
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration,
        "input_throughput": total_input / duration,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
        "concurrency": sum(series["e2e_latency"]) / duration,
    }
    for name in LATENCY_NAMES:
        for stat, value in latency_stats(series[name]).items():
            metrics[f"{stat}_{name}_ms"] = value
    return metrics


def per_request_details(outputs: List[RequestOutput]) -> dict:
    """Per-request lists (upstream's --output-details fields)."""
    return {
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": [o.output_len for o in outputs],
        "asked_output_lens": [o.asked_output_len for o in outputs],
        "ttfts": [o.ttft for o in outputs],
        "e2e_latencies": [o.latency for o in outputs],
        "itls": [o.itl for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
    }


def format_table(metrics: dict, header: Optional[Dict[str, object]] = None, width: int = 50) -> str:
    """The human-readable result block printed at the end of a run."""
    rows: List[tuple] = [(k, v) for k, v in (header or {}).items()]
    rows += [
        ("Successful requests", metrics["completed"]),
        ("Failed requests", metrics["failed"]),
        ("Benchmark duration (s)", metrics["duration"]),
        ("Total input tokens", metrics["total_input_tokens"]),
        ("Total generated tokens", metrics["total_output_tokens"]),
        ("Request throughput (req/s)", metrics["request_throughput"]),
        ("Input token throughput (tok/s)", metrics["input_throughput"]),
        ("Output token throughput (tok/s)", metrics["output_throughput"]),
        ("Total token throughput (tok/s)", metrics["total_token_throughput"]),
        ("Concurrency", metrics["concurrency"]),
    ]
    lines = [" Serving Benchmark Result ".center(width, "=")]
    lines += [_row(label, value, width) for label, value in rows]
    for name in LATENCY_NAMES:
        lines.append(f" {_LABELS[name]} ".center(width, "-"))
        for stat in ("mean", "median", "p99"):
            lines.append(_row(f"{stat.capitalize()} {_LABELS[name]} (ms)", metrics[f"{stat}_{name}_ms"], width))
    lines.append("=" * width)
    return "\n".join(lines)


def _row(label: str, value: object, width: int) -> str:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return f"{label + ':'} {text:>{max(width - len(label) - 2, 0)}}"
