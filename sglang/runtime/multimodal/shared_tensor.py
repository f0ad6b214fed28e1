"""Large pixel tensors cross from the tokenizer process to the scheduler through shared memory.

Messages travel pickled over ZMQ; a 448x448 image is ~2.4 MB of float32 patches and a video many
times that, which pickling would copy twice more. `export_features` moves each large tensor into a
POSIX shared-memory segment and leaves a small `ShmHandle` in its place; the scheduler's
`import_features` copies it out and unlinks the segment (ownership passes with the message). Segments
are named with the creating process's id, so `unlink_leftovers` can remove any the scheduler never
received when the server stops.
"""

from __future__ import annotations

import glob
import os
import uuid
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Dict, Tuple, Union

import torch

SHM_MIN_BYTES = 1 << 20  # smaller tensors are cheaper to pickle
_PREFIX = "sglang_mm"


@dataclass(frozen=True)
class ShmHandle:
    name: str
    shape: Tuple[int, ...]
    dtype: torch.dtype
    nbytes: int


Feature = Union[torch.Tensor, ShmHandle]


def _segment_name() -> str:
    return f"{_PREFIX}_{os.getpid()}_{uuid.uuid4().hex[:16]}"


def to_shm(tensor: torch.Tensor) -> ShmHandle:
    t = tensor.detach().contiguous().cpu()
    nbytes = t.numel() * t.element_size()
    shm = shared_memory.SharedMemory(name=_segment_name(), create=True, size=max(nbytes, 1))
    try:
        torch.frombuffer(shm.buf, dtype=torch.uint8, count=nbytes).copy_(t.reshape(-1).view(torch.uint8))
    finally:
        # The receiver unlinks it; this process must not remove it at exit.
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 (stdlib's own key)
        shm.close()
    return ShmHandle(shm.name, tuple(t.shape), t.dtype, nbytes)


def from_shm(handle: ShmHandle) -> torch.Tensor:
    shm = shared_memory.SharedMemory(name=handle.name)
    try:
        raw = torch.frombuffer(shm.buf, dtype=torch.uint8, count=handle.nbytes).clone()
    finally:
        shm.close()
        shm.unlink()
    return raw.view(handle.dtype).reshape(handle.shape)


def export_features(features: Dict[str, torch.Tensor], min_bytes: int = SHM_MIN_BYTES) -> Dict[str, Feature]:
    return {k: to_shm(v) if v.numel() * v.element_size() >= min_bytes else v for k, v in features.items()}


def import_features(features: Dict[str, Feature]) -> Dict[str, torch.Tensor]:
    return {k: from_shm(v) if isinstance(v, ShmHandle) else v for k, v in features.items()}


def unlink_leftovers(pid: int) -> int:
    """Remove segments process `pid` created that nobody consumed; returns how many."""
    count = 0
    for path in glob.glob(f"/dev/shm/{_PREFIX}_{pid}_*"):
        try:
            os.unlink(path)
            count += 1
        except FileNotFoundError:
            pass
    return count
