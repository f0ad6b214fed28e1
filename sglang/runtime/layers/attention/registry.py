"""Attention backends by name (`--attention-backend`), imported only when chosen."""

from __future__ import annotations

import importlib
import importlib.util
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:  # the registry stays torch-free: ServerArgs reads its names for --help
    from sglang.runtime.layers.attention.base import AttentionBackend

_BACKENDS = MappingProxyType({
    "torch_native": "sglang.runtime.layers.attention.torch_native_backend:TorchNativeAttnBackend",
    "triton": "sglang.runtime.layers.attention.triton_backend:TritonAttnBackend",
    "flashinfer": "sglang.runtime.layers.attention.flashinfer_backend:FlashInferAttnBackend",
})

ATTENTION_BACKEND_NAMES = tuple(_BACKENDS)

# Backends that wrap an optional third-party package: name -> package that must be importable.
_OPTIONAL_PACKAGES = MappingProxyType({"flashinfer": "flashinfer"})


def attention_backend_names() -> List[str]:
    """Names accepted by create_attention_backend (flashinfer only when it is installed)."""
    return [name for name in _BACKENDS if _package_available(name)]


def _package_available(name: str) -> bool:
    package = _OPTIONAL_PACKAGES.get(name)
    return package is None or importlib.util.find_spec(package) is not None


def get_attention_backend_class(name: str) -> type:
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {attention_backend_names()}")
    if not _package_available(name):
        raise ImportError(
            f"attention backend {name!r} needs the '{_OPTIONAL_PACKAGES[name]}' package, which is not "
            f"installed; install it or pick one of {attention_backend_names()}"
        )
    module_name, class_name = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_attention_backend(name: str, model_runner: Any) -> "AttentionBackend":
    """Instantiate backend `name` for a runner exposing device, req_to_token_pool and kv_pool."""
    return get_attention_backend_class(name)(model_runner)
