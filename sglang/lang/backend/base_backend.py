"""The one interface every frontend backend implements.

A backend sees a program state only as a `Prompt` snapshot (text, chat messages, images), so
backends never reach into the interpreter. Optional abilities are declared in `capabilities`;
the interpreter checks them and falls back (e.g. join without KV reuse) or raises a clear error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

from sglang.lang.chat_template import ChatTemplate
from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod
from sglang.lang.image_io import ImageInput
from sglang.lang.ir import SglSamplingParams

# Capability names.
CACHE_PREFIX = "cache_prefix"              # prefill-only requests populate a prefix cache
CONCAT_AND_APPEND = "concatenate_and_append"  # join reuses the children's KV
SELECT_EXACT = "select_exact"              # select scores every choice token by token
IMAGES = "images"                          # the backend can send images (the model may refuse)
STREAM = "stream"
CONSTRAINED = "constrained"                # regex / json_schema in gen
CHAT_MESSAGES = "chat_messages"            # prompts are sent as chat messages, not text


@dataclass
class Prompt:
    """What a backend gets from a program state at the moment of a call."""

    text: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    images: list[ImageInput] = field(default_factory=list)
    # Role of the open block (e.g. "assistant" while generating a reply), or None.
    cur_role: Optional[str] = None


@dataclass
class GenResult:
    text: str                  # the first (or only) completion
    meta_info: dict[str, Any]  # the backend's meta (prompt/completion tokens, cached_tokens, ...)
    texts: Optional[list[str]] = None  # all completions when n > 1


class BaseBackend(ABC):
    capabilities: frozenset[str] = frozenset()
    is_chat_model: bool = False

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    @abstractmethod
    def get_chat_template(self) -> ChatTemplate:
        """The template that turns role blocks into text for this backend's model."""

    @abstractmethod
    def generate(self, prompt: Prompt, params: SglSamplingParams) -> GenResult:
        """One completion of `prompt` (n of them when params.n > 1)."""

    @abstractmethod
    def generate_stream(self, prompt: Prompt, params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (text delta, meta_info so far); the deltas concatenate to the completion."""

    @abstractmethod
    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        """Pick one of `choices` as the continuation of `prompt`."""

    def cache_prefix(self, prefix: Union[Prompt, str]) -> None:
        """Prefill `prefix` (a Prompt, or plain text as upstream passes it) so later requests
        sharing it hit the cache (no-op if unsupported)."""

    def concatenate_and_append(self, parent: Prompt, children: list[Prompt]) -> dict[str, Any]:
        """Make parent + each child's continuation cached without recomputation."""
        raise RuntimeError(f"{type(self).__name__} cannot concatenate KV caches; "
                           f"use join() or a backend with {CONCAT_AND_APPEND!r}")

    def precompile_constraint(self, regex: Optional[str] = None,
                              json_schema: Optional[str] = None) -> bool:
        """Compile a constraint ahead of use (the compiler's jump-forward pass); True if done."""
        return False

    def flush_cache(self) -> bool:
        return False

    def get_server_info(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None:
        """Release what the backend owns (connections, subprocesses)."""
