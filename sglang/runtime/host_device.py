"""Host <-> device transfers that never make the host wait for the device's queue.

With overlap scheduling the GPU runs batch N while the CPU builds batch N+1, so no step of the
loop may synchronise with the stream except where a result is really read. Two PyTorch habits do
so silently on CUDA: `torch.tensor(data, device="cuda")` and assigning a CPU tensor into a CUDA
tensor are blocking copies (copy + cudaStreamSynchronize), and reading a device tensor
(`.tolist()`, `.item()`, `.cpu()`) waits for everything queued before it. These helpers copy
through pinned memory with `non_blocking=True` (the caching host allocator keeps the pinned block
alive until its copy has run) and read results back after an event. On CPU they are plain
tensor operations.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

DeviceLike = Union[str, torch.device]


def _is_cuda(device: DeviceLike) -> bool:
    return torch.device(device).type == "cuda"


def to_device(data: Sequence, dtype: torch.dtype, device: DeviceLike) -> torch.Tensor:
    """torch.tensor(data) on `device`, without a blocking copy."""
    if not _is_cuda(device):
        return torch.tensor(data, dtype=dtype, device=device)
    return torch.tensor(data, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


def host_to_device(t: torch.Tensor, device: DeviceLike) -> torch.Tensor:
    """A CPU tensor moved to `device` without a blocking copy (no-op when it is already there)."""
    if not _is_cuda(device) or t.is_cuda:
        return t.to(device)
    if not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class HostCopies:
    """Device tensors copied to pinned host memory behind one event.

    `add` queues a copy and returns the host tensor (valid only after `wait`); `record` marks the
    point on the stream after which every added copy is complete. On CPU, tensors are returned as
    they are and `wait` returns at once."""

    def __init__(self, device: DeviceLike):
        self.cuda = _is_cuda(device)
        self.event: Optional[torch.cuda.Event] = None

    def add(self, t: torch.Tensor) -> torch.Tensor:
        if not self.cuda or not t.is_cuda:
            return t
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        return host

    def record(self) -> None:
        if self.cuda:
            self.event = torch.cuda.Event()
            self.event.record()

    def wait(self) -> None:
        """Block until the recorded copies are done (waits for this batch only, not for work
        queued after it)."""
        if self.event is not None:
            self.event.synchronize()
            self.event = None


def host_empty(shape: Sequence[int], dtype: torch.dtype, device: DeviceLike) -> torch.Tensor:
    """An uninitialised host tensor, pinned when it is meant to be copied to a CUDA `device`."""
    return torch.empty(tuple(shape), dtype=dtype, pin_memory=_is_cuda(device))
