"""Tiny Hugging Face checkpoints and helpers shared by tests, examples, demos and benchmarks.

- `make_tiny_checkpoint(arch, out_dir, seed=0, shards=1, **config_overrides)`: a tiny random
  checkpoint (llama, mistral, qwen2, qwen3, gemma2) that transformers loads.
- `write_shape_config(name, out_dir)`: a real model's config + tokenizer, no weights.
- `tiny_model_dir(arch, ...)` / `shape_model_dir(name)`: the same, cached across processes.
"""

from sglang.testing.fixtures import shape_model_dir, tiny_model_dir
from sglang.testing.shapes import SHAPES, write_shape_config
from sglang.testing.tiny_model import ARCHES, make_tiny_checkpoint

SUPPORTED_ARCHES: tuple[str, ...] = tuple(ARCHES)
SUPPORTED_SHAPES: tuple[str, ...] = tuple(SHAPES)

__all__ = [
    "SUPPORTED_ARCHES",
    "SUPPORTED_SHAPES",
    "make_tiny_checkpoint",
    "shape_model_dir",
    "tiny_model_dir",
    "write_shape_config",
]
