"""Online serving benchmark: stream synthetic requests at a running server and report latency
and throughput (TTFT, TPOT, ITL, E2E; request/input/output throughput; concurrency).

    python -m sglang.launch_server --model-path M --port 30000 &
    python -m sglang.bench_serving --backend sglang --dataset-name random --num-prompts 64 \
        --random-input-len 128 --random-output-len 32 --random-range-ratio 1 --max-concurrency 16

Datasets are synthesized locally (nothing is downloaded); the tokenizer is the server's
(from /get_model_info) unless --tokenizer is given. Outputs ignore EOS so they have the asked
length (--disable-ignore-eos to let them stop early). For OpenAI backends, OPENAI_API_KEY is
sent as the bearer key.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from sglang.benchmark.serving_benchmark import run_benchmark
from sglang.benchmark.datasets import add_dataset_args
from sglang.benchmark.serving_clients import BACKEND_NAMES

__all__ = ["build_parser", "parse_args", "run_benchmark", "main"]


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="sglang", choices=BACKEND_NAMES,
                   help="sglang: native /generate; openai: /v1/completions; openai-chat: /v1/chat/completions.")
    p.add_argument("--base-url", default=None, help="Server URL, e.g. http://127.0.0.1:30000 (overrides --host/--port).")
    p.add_argument("--host", default="127.0.0.1", help="Server host.")
    p.add_argument("--port", type=int, default=30000, help="Server port.")
    p.add_argument("--model", default=None, help="Model name for OpenAI routes; default: the server's /v1/models.")
    p.add_argument("--tokenizer", default=None,
                   help="Tokenizer directory for the dataset; default: the server's model path from /get_model_info.")


def _add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request-rate", type=float, default=float("inf"),
                   help="Requests per second as a Poisson process; inf sends all at once.")
    p.add_argument("--max-concurrency", type=int, default=None, help="Most requests in flight at once.")
    p.add_argument("--warmup-requests", type=int, default=1, help="Requests sent (untimed) before the run.")
    p.add_argument("--flush-cache", action="store_true", help="POST /flush_cache after warm-up, before the run.")
    p.add_argument("--disable-ignore-eos", action="store_true", help="Let outputs stop at EOS (shorter than asked).")
    p.add_argument("--extra-request-body", default=None, help="JSON object merged into every request body.")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-file", default=None, help="Append the results as one JSON line to this file.")
    p.add_argument("--output-details", action="store_true", help="Include per-request lists in --output-file.")
    p.add_argument("--disable-tqdm", action="store_true", help="No progress bar.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sglang.bench_serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for add in (_add_target_args, add_dataset_args, _add_load_args, _add_output_args):
        add(p)
    return p


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    return run_benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
