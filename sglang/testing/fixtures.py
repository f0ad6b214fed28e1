"""Cached tiny checkpoints shared by every test process of a user.

Checkpoints live under `$SGLANG_TINY_CACHE_DIR` or `<tmp>/sglang-tiny-<uid>/`, one directory
per (kind, name, arguments, generator fingerprint). Each is built in a private temporary
directory and renamed into place, so parallel processes never see a half-written checkpoint;
the loser of a race discards its copy. The fingerprint covers this package's source and the
transformers/tokenizers versions, so editing the generator never serves a stale checkpoint.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

CACHE_ENV = "SGLANG_TINY_CACHE_DIR"
_SOURCES = ("corpus.py", "tokenizer_factory.py", "tiny_model.py", "shapes.py", "trained_model.py", "tiny_vlm.py",
            "tiny_pooling.py")


def cache_root() -> str:
    """Directory holding cached checkpoints (created on demand)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        user = str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
        root = os.path.join(tempfile.gettempdir(), f"sglang-tiny-{user}")
    os.makedirs(root, exist_ok=True)
    return root


def generator_fingerprint() -> str:
    """Hash of what determines checkpoint bytes: our generator source and library versions."""
    import tokenizers
    import transformers

    digest = hashlib.sha256(f"{transformers.__version__}|{tokenizers.__version__}".encode())
    here = Path(__file__).parent
    for path in [here / name for name in _SOURCES] + sorted((here / "tiny_vlms").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_key(kind: str, name: str, args: dict[str, Any]) -> str:
    payload = json.dumps({"kind": kind, "name": name, "args": args,
                          "fingerprint": generator_fingerprint()}, sort_keys=True, default=str)
    return f"{kind}-{name}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _cached_build(key: str, build: Callable[[str], Any]) -> str:
    """Return the cached directory for `key`, building it atomically if missing."""
    root = cache_root()
    final = os.path.join(root, key)
    if os.path.isdir(final):
        return final
    staging = tempfile.mkdtemp(prefix=f".{key}-", dir=root)
    try:
        build(staging)
        os.rename(staging, final)  # atomic on one filesystem; fails if another process won
    except OSError:
        if not os.path.isdir(final):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def tiny_model_dir(arch: str, seed: int = 0, shards: int = 1, **config_overrides: Any) -> str:
    """Path of a cached tiny `arch` checkpoint (see `make_tiny_checkpoint` for the arguments)."""
    from sglang.testing.tiny_model import arch_spec, make_tiny_checkpoint

    arch_spec(arch)  # reject unknown names before touching the cache
    args = {"seed": seed, "shards": shards, **config_overrides}
    key = _cache_key("tiny", arch, args)
    return _cached_build(
        key, lambda d: make_tiny_checkpoint(arch, d, seed=seed, shards=shards, **config_overrides)
    )


def tiny_pooling_dir(arch: str, head: str = "embedding", seed: int = 0, **options: Any) -> str:
    """Path of a cached tiny embedding / reward checkpoint (see `sglang.testing.tiny_pooling`)."""
    from sglang.testing.tiny_pooling import make_tiny_pooling_checkpoint

    args = {"head": head, "seed": seed, **options}
    return _cached_build(_cache_key("tiny_pooling", arch, args),
                         lambda d: make_tiny_pooling_checkpoint(arch, d, head=head, seed=seed, **options))


def tiny_vlm_dir(arch: str, seed: int = 0, **config_overrides: Any) -> str:
    """Path of a cached tiny vision-language checkpoint (see `sglang.testing.tiny_vlm`)."""
    from sglang.testing.tiny_vlm import VLM_BUILDERS, make_tiny_vlm

    if arch not in VLM_BUILDERS:
        raise ValueError(f"unknown vision-language arch {arch!r}; choose one of {sorted(VLM_BUILDERS)}")
    args = {"seed": seed, **config_overrides}
    return _cached_build(_cache_key("tiny_vlm", arch, args),
                         lambda d: make_tiny_vlm(arch, d, seed=seed, **config_overrides))


def shape_model_dir(name: str) -> str:
    """Path of a cached real-shape config + tokenizer directory (no weights; dummy loading)."""
    from sglang.testing.shapes import shape_spec, write_shape_config

    shape_spec(name)
    return _cached_build(_cache_key("shape", name, {}), lambda d: write_shape_config(name, d))


def tiny_gguf_path(arch: str, tensor_type: str = "F32", seed: int = 0, **config_overrides: Any) -> str:
    """Path of a cached GGUF file converted from the tiny `arch` checkpoint (sglang.testing.tiny_gguf),
    alone in its directory."""
    from sglang.testing.tiny_gguf import GGUF_FILE_NAME, write_tiny_gguf

    source = tiny_model_dir(arch, seed=seed, **config_overrides)
    writer = hashlib.sha256((Path(__file__).parent / "tiny_gguf.py").read_bytes()).hexdigest()[:16]
    key = _cache_key("gguf", arch, {"tensor_type": tensor_type, "seed": seed, "writer": writer, **config_overrides})
    directory = _cached_build(key, lambda d: write_tiny_gguf(source, os.path.join(d, GGUF_FILE_NAME), tensor_type))
    return os.path.join(directory, GGUF_FILE_NAME)


def trained_model_dir(seed: int = 0) -> str:
    """Path of the cached tiny llama trained to memorize `trained_corpus()` (built once, ~15 s)."""
    from sglang.testing.trained_model import make_trained_checkpoint

    return _cached_build(_cache_key("trained", "llama", {"seed": seed}),
                         lambda d: make_trained_checkpoint(d, seed=seed))
