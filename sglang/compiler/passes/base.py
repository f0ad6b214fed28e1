"""What every compiler pass implements, and what it gets to work with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

from sglang.compiler.graph import ProgramGraph
from sglang.lang.backend.base_backend import BaseBackend


@dataclass
class PassContext:
    backend: BaseBackend
    num_api_spec_tokens: Optional[int] = None


class CompilerPass(ABC):
    name: str = ""

    @abstractmethod
    def run(self, graph: ProgramGraph, ctx: PassContext) -> dict[str, Any]:
        """Rewrite `graph.ops` in place; return the pass's statistics."""
