"""The scheduler's side of multi-LoRA: at most --max-loras-per-batch distinct adapters among the
requests that run together, and runtime load/unload of adapters (refused while requests use one).
"""

from __future__ import annotations

from typing import Iterable, Optional, Set

from sglang.runtime.lora.adapter import LoraAdapterError
from sglang.runtime.managers.io_struct import LoadLoraReq, LoraReply, UnloadLoraReq


class LoraAdmission:
    """Adapters of the running requests plus those admitted into the next prefill batch; a waiting
    request whose adapter would make one too many is deferred (it stays queued)."""

    def __init__(self, limit: int, held: Iterable) -> None:
        self.limit = limit
        self.active: Set[str] = {r.lora_name for r in held if r is not None and r.lora_name is not None}

    def fits(self, req) -> bool:
        name = req.lora_name
        return name is None or name in self.active or len(self.active) < self.limit

    def add(self, req) -> None:
        if req.lora_name is not None:
            self.active.add(req.lora_name)


def make_admission(scheduler, batch: list) -> Optional[LoraAdmission]:
    """For the prefill batch being filled (`batch`: its requests so far, e.g. a continued chunk)."""
    if getattr(scheduler.runner, "lora", None) is None:
        return None
    held = list(scheduler.running) + list(batch) + [scheduler.chunked_req]
    return LoraAdmission(scheduler.server_args.max_loras_per_batch, held)


def handle_lora_control(scheduler, msg) -> LoraReply:
    """Load or unload an adapter between steps (the batch in flight processed first)."""
    lora = scheduler.runner.lora
    if lora is None:
        return LoraReply(False, "the server serves no LoRA adapters; start it with --enable-lora")
    scheduler.drain()
    try:
        if isinstance(msg, LoadLoraReq):
            lora.load(msg.lora_name, msg.lora_path)
            return LoraReply(True, f"loaded LoRA adapter {msg.lora_name!r}", lora.names())
        assert isinstance(msg, UnloadLoraReq)
        users = [r.rid for r in _queued_reqs(scheduler) if r.lora_name == msg.lora_name]
        if users:
            return LoraReply(False, f"LoRA adapter {msg.lora_name!r} is in use by {len(users)} running or waiting "
                                    f"request(s); unload it once they finish", lora.names())
        lora.unload(msg.lora_name)
        return LoraReply(True, f"unloaded LoRA adapter {msg.lora_name!r}", lora.names())
    except (LoraAdapterError, ValueError, OSError) as exc:
        return LoraReply(False, str(exc), lora.names())


def _queued_reqs(scheduler) -> list:
    reqs = list(scheduler.waiting) + list(scheduler.grammar.pending) + scheduler.live_reqs()
    return [r for r in reqs if r.finished_reason is None]
