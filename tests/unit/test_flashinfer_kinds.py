"""How the flashinfer backend groups layers into plans, checked on any host: the flashinfer package
is replaced by an empty module (the grouping never calls it)."""

from __future__ import annotations

import argparse
import importlib
import sys
import types

import pytest
import torch

pytest.importorskip("triton")

from sglang.runtime.layers.attention.radix_attention import RadixAttention  # noqa: E402
from sglang.runtime.layers.attention.registry import ATTENTION_BACKEND_NAMES  # noqa: E402
from sglang.runtime.server_args import ServerArgs  # noqa: E402


MODULE = "sglang.runtime.layers.attention.flashinfer_backend"


@pytest.fixture
def backend_module(monkeypatch):
    """The backend module imported against the stand-in, and dropped after the test so a later
    import (with the real package, on a GPU host) starts afresh."""
    monkeypatch.setitem(sys.modules, "flashinfer", types.ModuleType("flashinfer"))
    saved = sys.modules.pop(MODULE, None)
    try:
        yield importlib.import_module(MODULE)
    finally:
        sys.modules.pop(MODULE, None)
        if saved is not None:
            sys.modules[MODULE] = saved


def test_window_counts_keys_before_the_query(backend_module):
    # Ours: a window of W sees the query's position and the W - 1 before it; FlashInfer's
    # window_left counts only the ones before.
    kind = backend_module.AttnKind.of(RadixAttention(4, 64, 0.125, 2, layer_id=0, sliding_window_size=8))
    assert kind.window_left == 7
    assert backend_module.AttnKind.of(RadixAttention(4, 64, 0.125, 2, layer_id=1)).window_left == -1


def test_layers_group_by_window_cap_and_scale(backend_module):
    layers = torch.nn.ModuleList([
        RadixAttention(4, 64, 0.125, 2, layer_id=0, logit_cap=50.0, sliding_window_size=8),
        RadixAttention(4, 64, 0.125, 2, layer_id=1, logit_cap=50.0),
        RadixAttention(4, 64, 0.125, 2, layer_id=2, logit_cap=50.0, sliding_window_size=8),
    ])
    kinds = backend_module.attention_kinds(torch.nn.Sequential(layers))
    assert sorted(kinds) == [0, 1, 2]
    assert kinds[0] == kinds[2] != kinds[1]
    assert kinds[1] == backend_module.AttnKind(-1, 50.0, 0.125)


def test_tensor_core_choice_and_its_override(backend_module, monkeypatch):
    choose = backend_module.FlashInferAttnBackend._decode_tensor_cores
    monkeypatch.delenv(backend_module.TENSOR_CORE_ENV, raising=False)
    assert [choose(g) for g in (1, 4, 5, 8)] == [False, False, True, True]
    monkeypatch.setenv(backend_module.TENSOR_CORE_ENV, "1")
    assert choose(1)
    monkeypatch.setenv(backend_module.TENSOR_CORE_ENV, "0")
    assert not choose(8)
    with pytest.raises(ValueError, match="no kernel for 7"):
        choose(7)
    monkeypatch.setenv(backend_module.TENSOR_CORE_ENV, "yes")
    with pytest.raises(ValueError, match="auto, 0 or 1"):
        choose(4)


def test_cli_offers_every_registered_backend():
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    action = next(a for a in parser._actions if a.dest == "attention_backend")
    assert tuple(action.choices) == ATTENTION_BACKEND_NAMES == ("torch_native", "triton", "flashinfer")
    with pytest.raises(SystemExit):
        parser.parse_args(["--model-path", "m", "--attention-backend", "flash"])
