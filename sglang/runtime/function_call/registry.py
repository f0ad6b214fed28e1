"""Tool-call formats by name (`--tool-call-parser`), imported only when used, and detection of
the format from a chat template's text."""

from __future__ import annotations

import importlib
from typing import Dict, Optional, Tuple

from sglang.runtime.function_call.base import ToolCallFormat

# name -> (module, class); a constant table. Names are upstream SGLang's.
TOOL_CALL_PARSERS: Dict[str, Tuple[str, str]] = {
    "llama3": ("sglang.runtime.function_call.llama3", "Llama3Format"),
    "qwen25": ("sglang.runtime.function_call.qwen25", "Qwen25Format"),
    "mistral": ("sglang.runtime.function_call.mistral", "MistralFormat"),
    "hermes": ("sglang.runtime.function_call.hermes", "HermesFormat"),
    "pythonic": ("sglang.runtime.function_call.pythonic", "PythonicFormat"),
    "deepseekv3": ("sglang.runtime.function_call.deepseekv3", "DeepSeekV3Format"),
}
TOOL_CALL_PARSER_NAMES = tuple(TOOL_CALL_PARSERS)
# Detection order: the most specific template markers first (Qwen's ChatML before plain Hermes).
_DETECTION_ORDER = ("deepseekv3", "mistral", "qwen25", "hermes", "llama3", "pythonic")


def get_format(name: str) -> ToolCallFormat:
    if name not in TOOL_CALL_PARSERS:
        raise ValueError(f"unknown tool-call parser {name!r}; choose one of: {', '.join(TOOL_CALL_PARSERS)}")
    module_name, class_name = TOOL_CALL_PARSERS[name]
    return getattr(importlib.import_module(module_name), class_name)()


def detect_format(template: Optional[str]) -> Optional[ToolCallFormat]:
    """The format whose markers all appear in the chat template's source, or None (the template
    does not describe tool calls)."""
    if not template:
        return None
    for name in _DETECTION_ORDER:
        fmt = get_format(name)
        if all(marker in template for marker in fmt.template_markers):
            return fmt
    return None
