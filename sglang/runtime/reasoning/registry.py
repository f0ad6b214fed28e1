"""Reasoning parsers by name (`--reasoning-parser`; upstream SGLang's names)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from sglang.runtime.reasoning.parser import ReasoningParser

REASONING_PARSERS: Mapping[str, ReasoningParser] = MappingProxyType({
    "deepseek-r1": ReasoningParser("deepseek-r1", forced=True),
    "qwen3": ReasoningParser("qwen3", forced=False),
    "qwen3-thinking": ReasoningParser("qwen3-thinking", forced=True),
})
REASONING_PARSER_NAMES = tuple(REASONING_PARSERS)


def get_reasoning_parser(name: str) -> ReasoningParser:
    if name not in REASONING_PARSERS:
        raise ValueError(f"unknown reasoning parser {name!r}; choose one of: {', '.join(REASONING_PARSERS)}")
    return REASONING_PARSERS[name]
