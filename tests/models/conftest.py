"""Tiny checkpoints for the model tests, cached across sessions by sglang.testing.fixtures.

Cached directories are shared: tests that need a modified checkpoint copy it first."""

from __future__ import annotations

from typing import Callable

import pytest

from sglang.testing.fixtures import tiny_model_dir


@pytest.fixture(scope="session")
def tiny_ckpt() -> Callable[..., str]:
    """tiny_ckpt(arch, shards=1, **config_overrides) -> checkpoint directory (read-only)."""

    def make(arch: str, shards: int = 1, **overrides) -> str:
        return tiny_model_dir(arch, shards=shards, **overrides)

    return make
