"""The front end's view of the loaded adapters: which names requests may use (checked before a
request is queued, so a bad name is a 400), and which adapter an OpenAI `model` field selects."""

from __future__ import annotations

from typing import Iterable, List, Optional

from sglang.runtime.lora.config import parse_lora_paths
from sglang.runtime.managers.io_struct import LoraReply


class LoraNames:
    def __init__(self, server_args) -> None:
        self.enabled = bool(server_args.enable_lora)
        self.names = set(parse_lora_paths(server_args.lora_paths)) if self.enabled else set()

    def loaded(self) -> List[str]:
        return sorted(self.names)

    def check(self, names: Iterable[Optional[str]]) -> None:
        """ValueError (a 400) for an adapter name that is not loaded, or any name without LoRA."""
        for name in names:
            if name is None:
                continue
            if not self.enabled:
                raise ValueError("lora_path was given but the server serves no LoRA adapters "
                                 "(start it with --enable-lora or --lora-paths)")
            if name not in self.names:
                raise ValueError(f"LoRA adapter {name!r} is not loaded; loaded adapters: {self.loaded()}")

    def merge(self, replies: List[LoraReply]) -> LoraReply:
        """One reply from the replicas' replies; the known names follow what they loaded."""
        ok = all(r.success for r in replies)
        if replies and replies[0].loaded is not None:
            self.names = set(replies[0].loaded)
        message = "; ".join(sorted({r.message for r in replies if r.message}))
        return LoraReply(ok, message, self.loaded())

    def for_model(self, model: str, base_names: Iterable[str]) -> Optional[str]:
        """The adapter an OpenAI `model` names: '<adapter>' or '<base>:<adapter>'; None when it names
        no adapter. A '<base>:<adapter>' with an unknown adapter is a ValueError."""
        if not self.enabled:
            return None
        if model in self.names:
            return model
        base, sep, adapter = model.rpartition(":")
        if sep and base in set(base_names):
            self.check([adapter])
            return adapter
        return None
