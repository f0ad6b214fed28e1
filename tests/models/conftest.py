"""Session-cached tiny checkpoints (written once per session, keyed by arch + config overrides)."""

from __future__ import annotations

import json
from typing import Callable

import pytest

from sglang.testing.tiny_model import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Callable[..., str]:
    """tiny_ckpt(arch, shards=1, **config_overrides) -> checkpoint directory."""
    cache: dict = {}

    def make(arch: str, shards: int = 1, **overrides) -> str:
        key = (arch, shards, json.dumps(overrides, sort_keys=True))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{arch}")
            cache[key] = make_tiny_checkpoint(arch, str(out), seed=0, shards=shards, **overrides)
        return cache[key]

    return make
