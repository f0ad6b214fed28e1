"""Code motion (opt-in): inside `sgl.order_independent(...)`, constant parts go first.

Only text the program declared order-independent moves, so the rewrite is never silent; moving
constants ahead of argument-dependent text lengthens the prefix that submissions share.
"""

from __future__ import annotations

from typing import Any

from sglang.compiler.graph import ProgramGraph, Submit, leaves
from sglang.compiler.passes.base import CompilerPass, PassContext
from sglang.lang.ir import SglConstantText, SglExpr, SglExprList, SglOrderIndependent


def _is_constant(expr: SglExpr) -> bool:
    return all(isinstance(leaf, SglConstantText) for leaf in leaves(expr))


class CodeMotionPass(CompilerPass):
    name = "code_motion"

    def run(self, graph: ProgramGraph, ctx: PassContext) -> dict[str, Any]:
        stats = {"groups_reordered": 0, "hoisted_chars": 0}
        for op in graph.ops:
            if isinstance(op, Submit):
                op.expr = self._rewrite(op.expr, stats)
        return stats

    def _rewrite(self, expr: SglExpr, stats: dict[str, int]) -> SglExpr:
        if isinstance(expr, SglExprList):
            return SglExprList([self._rewrite(e, stats) for e in expr.exprs])
        if not isinstance(expr, SglOrderIndependent):
            return expr
        const = [p for p in expr.parts if _is_constant(p)]
        rest = [p for p in expr.parts if not _is_constant(p)]
        if const and rest and expr.parts != const + rest:
            stats["groups_reordered"] += 1
            stats["hoisted_chars"] += sum(len(leaf.value) for p in const for leaf in leaves(p))
        return SglOrderIndependent(const + rest)
