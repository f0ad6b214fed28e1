"""API speculative execution (programs with `num_api_spec_tokens`, on OpenAI-style backends).

Runs of `gen, text, gen, text, gen` on one stream become one SglSpecGen: a single API call
generates them all and the output is matched back to the template (sglang/lang/interpreter/
spec_gen.py), with normal calls for whatever does not match. Backends with a prefix cache
(our runtime) gain nothing from it and are left alone.
"""

from __future__ import annotations

from typing import Any

from sglang.compiler.graph import ProgramGraph, Submit, leaves
from sglang.compiler.passes.base import CompilerPass, PassContext
from sglang.lang.backend.base_backend import CACHE_PREFIX
from sglang.lang.ir import SglConstantText, SglExpr, SglExprList, SglGen, SglSpecGen

_PER_GEN_KEYS = {"max_new_tokens", "stop"}


def _mergeable(gen: SglExpr) -> bool:
    if not isinstance(gen, SglGen):
        return False
    p = gen.sampling_params
    return not p.is_constrained() and (p.n or 1) == 1 and not p.return_logprob and not p.stop_regex


def _shared_params(gen: SglGen) -> dict[str, Any]:
    return {k: v for k, v in gen.sampling_params.given().items() if k not in _PER_GEN_KEYS}


def coalesce_submits(graph: ProgramGraph) -> None:
    """Adjacent submits to the same stream become one (same order, so same semantics)."""
    ops: list[Any] = []
    for op in graph.ops:
        prev = ops[-1] if ops else None
        if isinstance(op, Submit) and isinstance(prev, Submit) and prev.stream == op.stream:
            ops[-1] = Submit(op.stream, SglExprList(leaves(prev.expr) + leaves(op.expr)))
        else:
            ops.append(op)
    graph.ops = ops


def merge_runs(items: list[SglExpr], num_tokens: int) -> tuple[list[SglExpr], int, int]:
    """Replace each maximal gen (text gen)+ run; returns (items, groups, gens merged)."""
    out: list[SglExpr] = []
    groups = merged = 0
    i = 0
    while i < len(items):
        j = i
        if _mergeable(items[i]):
            j = i + 1
            while (j + 1 < len(items) and isinstance(items[j], SglConstantText)
                   and _mergeable(items[j + 1])
                   and _shared_params(items[j + 1]) == _shared_params(items[i])):
                j += 2
        gens = (j - i + 1) // 2
        if gens >= 2:
            trailing = 1 if j < len(items) and isinstance(items[j], SglConstantText) else 0
            out.append(SglSpecGen(items[i:j + trailing], num_tokens))
            groups, merged, i = groups + 1, merged + gens, j + trailing
        else:
            out.append(items[i])
            i += 1
    return out, groups, merged


class ApiSpeculativePass(CompilerPass):
    name = "api_speculative"

    def run(self, graph: ProgramGraph, ctx: PassContext) -> dict[str, Any]:
        stats = {"spec_groups": 0, "gens_merged": 0}
        if not ctx.num_api_spec_tokens or ctx.backend.has(CACHE_PREFIX):
            return stats
        coalesce_submits(graph)
        for op in graph.ops:
            if isinstance(op, Submit):
                items, groups, merged = merge_runs(leaves(op.expr), ctx.num_api_spec_tokens)
                if groups:
                    op.expr = SglExprList(items)
                    stats["spec_groups"] += groups
                    stats["gens_merged"] += merged
        return stats
