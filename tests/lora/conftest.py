"""Shared fixtures: tiny base checkpoints and random PEFT adapters written by peft."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

from sglang.testing.fixtures import tiny_model_dir  # noqa: E402
from sglang.testing.tiny_lora import write_peft_adapter  # noqa: E402

ARCHS = ("llama", "qwen2")


@pytest.fixture(scope="session")
def lora_dirs(tmp_path_factory):
    """{arch: (base_dir, {adapter name: adapter dir})}: per arch four adapters of different ranks,
    alphas and targets (one rsLoRA)."""
    root = tmp_path_factory.mktemp("lora")
    specs = {
        "a1": dict(r=4, alpha=8.0, seed=1),
        "a2": dict(r=8, alpha=4.0, seed=2, targets=("q_proj", "v_proj")),
        "a3": dict(r=2, alpha=16.0, seed=3, use_rslora=True, targets=("o_proj", "gate_proj", "down_proj")),
        "a4": dict(r=8, alpha=8.0, seed=4, targets=("k_proj", "up_proj")),
    }
    out = {}
    for arch in ARCHS:
        base = tiny_model_dir(arch)
        out[arch] = (base, {n: write_peft_adapter(base, str(root / arch / n), **s) for n, s in specs.items()})
    return out
