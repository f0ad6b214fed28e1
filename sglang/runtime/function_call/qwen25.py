"""Qwen 2.5 calls: Hermes markup (<tool_call> blocks), detected by Qwen's ChatML template."""

from __future__ import annotations

from sglang.runtime.function_call.hermes import OPEN, HermesFormat


class Qwen25Format(HermesFormat):
    name = "qwen25"
    template_markers = (OPEN, "<|im_start|>")
