"""Prefix sharing: prefill what several requests share once, before they fan out.

* Each fork of more than one child gets a cache hint (a prefill-only request) for the parent's
  text plus the constant text every child starts with, so the children's requests all hit it.
* `run_batch` (see batch_plan.py) prefills the submissions' shared prefixes and runs submissions
  with common prefixes together.
"""

from __future__ import annotations

import os
from typing import Any

from sglang.compiler.graph import CacheHint, Fork, ProgramGraph, Submit, leaves
from sglang.compiler.passes.base import CompilerPass, PassContext
from sglang.lang.ir import SglConstantText


def word_boundary_prefix(text: str) -> str:
    """`text` cut before its last whitespace: the children continue it differently there, and a
    hint ending mid-word (or on a bare space) would tokenize differently from the children."""
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[:cut] if cut > 0 else ""


def leading_constant(graph: ProgramGraph, stream: int, after: int) -> str:
    """Constant text a stream adds before anything dynamic, looking at ops after index `after`."""
    text = ""
    for op in graph.ops[after + 1:]:
        if not isinstance(op, Submit) or op.stream != stream:
            if getattr(op, "stream", None) == stream:
                break  # a fork/join/set_var on this stream ends its constant start
            continue
        for leaf in leaves(op.expr):
            if not isinstance(leaf, SglConstantText):
                return text
            text += leaf.value
    return text


class PrefixSharingPass(CompilerPass):
    name = "prefix_sharing"

    def run(self, graph: ProgramGraph, ctx: PassContext) -> dict[str, Any]:
        ops, hinted, extra_chars = [], 0, 0
        for i, op in enumerate(graph.ops):
            if isinstance(op, Fork) and len(op.children) > 1:
                shared = word_boundary_prefix(
                    os.path.commonprefix([leading_constant(graph, c, i) for c in op.children]))
                ops.append(CacheHint(op.stream, [SglConstantText(shared)] if shared else []))
                hinted += 1
                extra_chars += len(shared)
            ops.append(op)
        graph.ops = ops
        graph.batch_prefix_sharing = True
        return {"fork_groups_hinted": hinted, "child_constant_chars_in_hints": extra_chars}
