"""Shared pytest setup: tiny-checkpoint fixtures and skipping of GPU tests without CUDA."""

from __future__ import annotations

from typing import Callable

import pytest

from sglang.testing import SUPPORTED_ARCHES, shape_model_dir, tiny_model_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return  # don't pay for a CUDA probe when no GPU test was collected
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def cpu_ext():
    """The C++ CPU kernels module; tests that need it skip where it cannot be built."""
    from sglang.kernels.cpu.build import load_cpu_extension

    module = load_cpu_extension()
    if module is None:
        pytest.skip("the C++ CPU kernels cannot be built here (no compiler or ninja)")
    return module


@pytest.fixture(scope="session")
def tiny_model_path() -> Callable[..., str]:
    """Factory: tiny_model_path(arch, seed=0, shards=1, **config_overrides) -> cached dir."""
    return tiny_model_dir


@pytest.fixture(scope="session")
def shape_path() -> Callable[[str], str]:
    """Factory: shape_path("llama-3-8b") -> cached config + tokenizer dir (no weights)."""
    return shape_model_dir


@pytest.fixture(scope="session", params=SUPPORTED_ARCHES)
def arch_path(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(arch, checkpoint dir), parametrized over every supported architecture."""
    return request.param, tiny_model_dir(request.param)


@pytest.fixture(scope="session")
def llama_path() -> str:
    return tiny_model_dir("llama")


@pytest.fixture(scope="session")
def llama_prompts(llama_path: str) -> list:
    """Token-id prompts for the tiny llama: 8 texts of varied length plus 4 random-id ones."""
    from sglang.runtime.utils import get_tokenizer
    from tests.engine.prompts import prompt_ids

    return prompt_ids(get_tokenizer(llama_path), n=8, extra_random=4)


@pytest.fixture(scope="session")
def mistral_path() -> str:
    return tiny_model_dir("mistral")


@pytest.fixture(scope="session")
def qwen2_path() -> str:
    return tiny_model_dir("qwen2")


@pytest.fixture(scope="session")
def qwen3_path() -> str:
    return tiny_model_dir("qwen3")


@pytest.fixture(scope="session")
def gemma2_path() -> str:
    return tiny_model_dir("gemma2")
