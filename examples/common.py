"""Shared setup for the examples: a backend from the command line.

    python examples/quick_start.py                      # start our server on the default model
    python examples/quick_start.py --url http://127.0.0.1:30000   # use a running server
    python examples/quick_start.py --model-path /path/to/hf/model --device cuda

The default model is SmolLM2-135M-Instruct (a GGUF file fetched once, 93 MB, into
~/.cache/sglang; `python -m sglang.testing.models smollm2` prints its path). Offline, the examples
fall back to the trained tiny model and say so; they still run, but its answers are not meaningful.
"""

from __future__ import annotations

import argparse
from typing import Any

import sglang as sgl


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=None, help="Base URL of a running sglang server; "
                        "without it the example starts one (sgl.Runtime).")
    parser.add_argument("--model-path", default=None, help="Model for the started server "
                        "(default: SmolLM2-135M-Instruct, fetched once into ~/.cache/sglang).")
    parser.add_argument("--device", default="cpu", help="Device of the started server.")
    return parser.parse_args()


def start_backend(args: argparse.Namespace) -> Any:
    """A backend for the example (the caller shuts it down)."""
    if args.url:
        return sgl.RuntimeEndpoint(args.url)
    from sglang.testing.models import default_model_path

    return sgl.Runtime(model_path=args.model_path or default_model_path(), device=args.device)
