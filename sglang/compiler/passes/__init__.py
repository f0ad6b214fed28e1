"""Compiler passes, by name (imported lazily), in the order they run."""

from __future__ import annotations

import importlib

from sglang.compiler.passes.base import CompilerPass, PassContext

PASS_REGISTRY: dict[str, str] = {
    "code_motion": "sglang.compiler.passes.code_motion:CodeMotionPass",
    "jump_forward": "sglang.compiler.passes.jump_forward:JumpForwardPass",
    "api_speculative": "sglang.compiler.passes.api_speculative:ApiSpeculativePass",
    "prefix_sharing": "sglang.compiler.passes.prefix_sharing:PrefixSharingPass",
}
# On unless turned off; code motion reorders text, so a program must ask for it.
DEFAULT_PASSES = {"code_motion": False, "jump_forward": True, "api_speculative": True,
                  "prefix_sharing": True}


def load_pass(name: str) -> CompilerPass:
    if name not in PASS_REGISTRY:
        raise ValueError(f"unknown compiler pass {name!r}; passes: {', '.join(PASS_REGISTRY)}")
    module, cls = PASS_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["CompilerPass", "PassContext", "PASS_REGISTRY", "DEFAULT_PASSES", "load_pass"]
