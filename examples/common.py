"""Shared setup for the examples: a backend from the command line.

    python examples/quick_start.py                      # start our server on the embedded tiny model
    python examples/quick_start.py --url http://127.0.0.1:30000   # use a running server
    python examples/quick_start.py --model-path /path/to/hf/model --device cuda

The embedded model is a small Llama trained in a few seconds on a toy corpus (people records,
Q/A lines, reviews), so its answers are short and predictable; with a real model the same
programs produce real answers.
"""

from __future__ import annotations

import argparse
from typing import Any

import sglang as sgl


def embedded_model() -> str:
    from sglang.testing import fixtures
    maker = getattr(fixtures, "trained_model_dir", None)
    return maker() if maker else fixtures.tiny_model_dir("llama")


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", default=None, help="Base URL of a running sglang server; "
                        "without it the example starts one (sgl.Runtime).")
    parser.add_argument("--model-path", default=None, help="Model for the started server "
                        "(default: the embedded tiny model).")
    parser.add_argument("--device", default="cpu", help="Device of the started server.")
    return parser.parse_args()


def start_backend(args: argparse.Namespace) -> Any:
    """A backend for the example (the caller shuts it down)."""
    if args.url:
        return sgl.RuntimeEndpoint(args.url)
    return sgl.Runtime(model_path=args.model_path or embedded_model(), device=args.device)
