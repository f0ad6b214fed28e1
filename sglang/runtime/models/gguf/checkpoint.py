"""An open GGUF file: its metadata and tensor table, read with the `gguf` package's reader.

The reader memory-maps the file; tensor data is touched only when a tensor is dequantized."""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

_MISSING = object()


class GGUFCheckpoint:
    def __init__(self, path: str):
        from gguf import GGUFReader

        try:
            self.reader = GGUFReader(path)
        except Exception as exc:  # a truncated or corrupt file fails deep inside the parser
            raise ValueError(f"{path!r} is not a readable GGUF file: {type(exc).__name__}: {exc}") from exc
        self.path = path
        self.architecture: str = self.get("general.architecture")
        self._tensors = {t.name: t for t in self.reader.tensors}
        splits = int(self.get("split.count", 1))
        if splits > 1:
            raise ValueError(f"{path!r} is one part of a GGUF split into {splits} files; merge the parts into "
                             f"one file first (llama.cpp: llama-gguf-split --merge)")

    # ---------------------------------------------------------------- metadata
    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The metadata value of `key` (str, number, bool, or a list of them)."""
        field = self.reader.get_field(key)
        if field is None:
            if default is _MISSING:
                raise ValueError(f"GGUF file {self.path!r} has no metadata key {key!r}")
            return default
        return field.contents()

    def arch_get(self, key: str, default: Any = _MISSING) -> Any:
        """`get('<architecture>.<key>')`: llama.cpp prefixes model hyperparameters with the arch."""
        return self.get(f"{self.architecture}.{key}", default)

    def arch_float(self, key: str, default: Any = _MISSING) -> Any:
        """A float32 metadata value as the decimal it was written from (1e-06, not 9.99999997e-07)."""
        value = self.arch_get(key, default)
        return value if value is None else float(str(np.float32(value)))

    # ---------------------------------------------------------------- tensors
    @property
    def tensors(self) -> List[Any]:
        """The reader's tensor records, in file order (name, tensor_type, shape, data)."""
        return list(self._tensors.values())

    def has_tensor(self, name: str) -> bool:
        return name in self._tensors

    def tensor(self, name: str) -> Any:
        return self._tensors[name]

    def logical_shape(self, name: str) -> Sequence[int]:
        """Shape in torch order (ggml lists the fastest-moving dimension first)."""
        return tuple(int(d) for d in reversed(self._tensors[name].shape.tolist()))

    def tensor_type_counts(self) -> Dict[str, int]:
        return dict(Counter(t.tensor_type.name for t in self._tensors.values()))

    def float_dtype_name(self) -> Optional[str]:
        """The half type the weights were written in ('bfloat16' / 'float16'), 'float32' for an
        all-F32 file, None for a quantized one (norms are F32 in every file)."""
        types = set(self.tensor_type_counts())
        if types <= {"F32", "F16", "BF16"}:
            return "bfloat16" if "BF16" in types else "float16" if "F16" in types else "float32"
        return None
