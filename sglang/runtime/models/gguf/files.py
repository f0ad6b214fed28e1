"""Which paths name a GGUF checkpoint. Import-light (no torch, no gguf): the launcher validates
--model-path with these rules before anything heavy is imported."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"
# Load formats that read safetensors / .bin files, never a GGUF.
_HF_WEIGHT_FORMATS = ("safetensors", "pt")


class GGUFPathError(ValueError):
    """A path meant as a GGUF checkpoint is not usable; the message says why."""


def has_gguf_suffix(path: str) -> bool:
    return path.lower().endswith(GGUF_SUFFIX)


def is_gguf_file(path: str) -> bool:
    """A regular file named *.gguf (its header is checked by `check_gguf_header`)."""
    return has_gguf_suffix(path) and os.path.isfile(path)


def check_gguf_header(path: str) -> None:
    """Raise GGUFPathError unless `path` starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise GGUFPathError(f"{path!r} cannot be read: {exc}") from None
    if magic != GGUF_MAGIC:
        raise GGUFPathError(f"{path!r} is named .gguf but is not a GGUF file (it starts with {magic!r}, "
                            f"not {GGUF_MAGIC!r})")


def gguf_files_in(directory: str) -> List[str]:
    return sorted(name for name in os.listdir(directory)
                  if has_gguf_suffix(name) and os.path.isfile(os.path.join(directory, name)))


def resolve_gguf_file(path: str, load_format: str = "auto") -> Optional[str]:
    """The GGUF file `path` names, or None when `path` is not a GGUF checkpoint.

    A `.gguf` file is one (load formats 'auto', 'gguf', 'dummy'); so is a directory holding exactly
    one `.gguf` file when load_format is 'gguf'. Raises GGUFPathError when the two disagree."""
    if is_gguf_file(path):
        if load_format in _HF_WEIGHT_FORMATS:
            raise GGUFPathError(f"{path!r} is a GGUF file but --load-format is {load_format!r}; use "
                                f"--load-format gguf (or auto)")
        check_gguf_header(path)
        return path
    if load_format != "gguf":
        return None
    if not os.path.isdir(path):
        raise GGUFPathError(f"{path!r} is neither a .gguf file nor a directory holding one, which "
                            f"--load-format gguf needs")
    found = gguf_files_in(path)
    if len(found) != 1:
        what = "no .gguf file" if not found else f"{len(found)} .gguf files ({', '.join(found)})"
        raise GGUFPathError(f"{path!r} holds {what}, where --load-format gguf needs exactly one; pass "
                            f"the GGUF file itself as --model-path")
    file = os.path.join(path, found[0])
    check_gguf_header(file)
    return file


def pretrained_source(path: str) -> Tuple[str, Dict[str, Any]]:
    """(name_or_dir, kwargs) for transformers' `from_pretrained`: a GGUF file is read as
    `from_pretrained(its_dir, gguf_file=its_name)`."""
    if is_gguf_file(path):
        return os.path.dirname(os.path.abspath(path)), {"gguf_file": os.path.basename(path)}
    return path, {}
