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
    from sglang.runtime.server_args import ServerArgs

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return ServerArgs.from_cli_args(args)
    except ValueError as exc:  # invalid combinations: report like argparse does (exit code 2)
        parser.error(str(exc))


def main(argv: Optional[List[str]] = None) -> int:
    server_args = parse_server_args(argv)
    from sglang.runtime.entrypoints.http_server import launch_server
    from sglang.runtime.utils import configure_logging

    configure_logging(server_args.log_level)
    try:
        return launch_server(server_args)
    except (ValueError, RuntimeError) as exc:  # startup errors carry a message saying what to change
        print(f"sglang.launch_server: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
