"""`python -m sglang.launch_server --model-path DIR [options]`: the HTTP server.

Every option comes from the ServerArgs dataclass (`--help` lists them with their defaults).
This module stays import-light: the runtime's child processes are spawned and re-import the
main module, so heavy imports happen inside `main` only.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    from sglang.runtime.server_args import ServerArgs

    parser = argparse.ArgumentParser(
        prog="python -m sglang.launch_server",
        description="Serve a model over HTTP: SGLang's native API (/generate, ...) and the OpenAI-compatible "
                    "API (/v1/chat/completions, /v1/completions, /v1/models).",
    )
    ServerArgs.add_cli_args(parser)
    return parser


def parse_server_args(argv: Optional[List[str]] = None):
    parser = build_parser()
    return _server_args(parser, parser.parse_args(argv))


def _server_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from sglang.runtime.server_args import ServerArgs

    try:
        return ServerArgs.from_cli_args(args)
    except ValueError as exc:  # invalid combinations: report like argparse does (exit code 2)
        parser.error(str(exc))


def main(argv: Optional[List[str]] = None) -> int:
    from sglang.runtime.checkpoint_path import resolve_checkpoint_dir, use_local_checkpoint

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Before ServerArgs (which may import torch to pick the device): a wrong path fails at once.
        model_dir = resolve_checkpoint_dir(args.model_path, args.revision, args.load_format)
        server_args = _server_args(parser, args)
        use_local_checkpoint(server_args, model_dir)
    except ValueError as exc:
        return _startup_error(exc)
    from sglang.runtime.entrypoints.http_server import launch_server
    from sglang.runtime.utils import configure_logging

    configure_logging(server_args.log_level)
    try:
        return launch_server(server_args)
    except (ValueError, RuntimeError) as exc:  # startup errors carry a message saying what to change
        return _startup_error(exc)


def _startup_error(exc: Exception) -> int:
    print(f"sglang.launch_server: error: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
