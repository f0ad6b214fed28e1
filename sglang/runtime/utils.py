"""Small process-level helpers shared by the runtime's processes."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional


def configure_logging(level: str = "info", prefix: str = "") -> None:
    tag = f" {prefix}" if prefix else ""
    root_level = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=root_level,
        format=f"[%(asctime)s{tag}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # httpx logs every request it makes at INFO; the server's only client request is its own
    # warm-up, which it reports itself. Those lines show at --log-level debug.
    logging.getLogger("httpx").setLevel(root_level if root_level <= logging.DEBUG
                                        else max(root_level, logging.WARNING))


def get_tokenizer(tokenizer_path: str, tokenizer_mode: str = "auto", trust_remote_code: bool = False):
    """The tokenizer of a checkpoint directory, a Hugging Face repo id, or a GGUF file (transformers
    builds it from the file's metadata, chat template included)."""
    from transformers import AutoTokenizer

    from sglang.runtime.models.gguf.files import pretrained_source

    source, gguf_kwargs = pretrained_source(tokenizer_path)
    try:
        return AutoTokenizer.from_pretrained(
            source, use_fast=tokenizer_mode != "slow", trust_remote_code=trust_remote_code, **gguf_kwargs
        )
    except Exception as exc:  # surface a message that says what to change
        raise RuntimeError(f"could not load a tokenizer from {tokenizer_path!r}: {exc}") from exc


def load_server_tokenizer(server_args) -> Optional[object]:
    if server_args.skip_tokenizer_init:
        return None
    return get_tokenizer(server_args.tokenizer_path, server_args.tokenizer_mode, server_args.trust_remote_code)


def kill_process(pid: Optional[int], sig: int = signal.SIGKILL) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
