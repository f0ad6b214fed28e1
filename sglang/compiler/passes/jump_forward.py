"""Jump-forward precompilation.

* The literal text a regex constraint starts with is forced: it becomes a constant node before a
  gen on the rest of the regex (the variable still holds the whole match), so it is prefilled
  with the prompt instead of being decoded or jumped over at run time.
* Every distinct constraint (regex / JSON schema) is compiled on the backend once, at compile
  time, so no request waits for a grammar compile.
"""

from __future__ import annotations

import re
import re._parser as sre_parse
from typing import Any, Optional

from sglang.compiler.graph import ProgramGraph, Submit
from sglang.compiler.passes.base import CompilerPass, PassContext
from sglang.lang.ir import (SglConstantText, SglExpr, SglExprList, SglGen, SglVarScopeBegin,
                            SglVarScopeEnd)

_SPECIAL = set(".^$*+?{}[]|()\\")


def _atoms(source: str) -> list[tuple[int, Optional[str]]]:
    """(end position, literal char or None) for each leading plain or escaped-punctuation atom."""
    out, i = [], 0
    while i < len(source):
        c = source[i]
        if c == "\\" and i + 1 < len(source) and not source[i + 1].isalnum():
            out.append((i + 2, source[i + 1]))
            i += 2
        elif c not in _SPECIAL:
            out.append((i + 1, c))
            i += 1
        else:
            break
    return out


def split_literal_prefix(regex: str) -> tuple[str, str]:
    """(forced literal prefix, rest of the regex); ('', regex) when nothing is safely forced."""
    try:
        items = sre_parse.parse(regex).data
    except re.error:
        return "", regex
    n = 0
    while n < len(items) and items[n][0] is sre_parse.LITERAL:
        n += 1
    atoms = _atoms(regex)[:n]
    if n == 0 or len(atoms) < n:
        return "", regex
    literal = "".join(ch for _, ch in atoms)
    if [ord(c) for c in literal] != [arg for _, arg in items[:n]]:
        return "", regex
    return literal, regex[atoms[-1][0]:]


def _splittable(gen: SglGen) -> bool:
    p = gen.sampling_params
    return p.regex is not None and (p.n or 1) == 1 and not p.return_logprob


class JumpForwardPass(CompilerPass):
    name = "jump_forward"

    def run(self, graph: ProgramGraph, ctx: PassContext) -> dict[str, Any]:
        stats = {"gens_split": 0, "constant_chars": 0, "constraints_precompiled": 0}
        constraints: dict[tuple[str, str], None] = {}
        for op in graph.ops:
            if isinstance(op, Submit):
                op.expr = self._rewrite(op.expr, stats, constraints)
        precompile = getattr(ctx.backend, "precompile_constraint", None)
        for kind, spec in constraints:
            if precompile is not None and precompile(**{kind: spec}):
                stats["constraints_precompiled"] += 1
        return stats

    def _rewrite(self, expr: SglExpr, stats: dict[str, int],
                 constraints: dict[tuple[str, str], None]) -> SglExpr:
        if isinstance(expr, SglExprList):
            return SglExprList([self._rewrite(e, stats, constraints) for e in expr.exprs])
        if not isinstance(expr, SglGen):
            return expr
        params = expr.sampling_params
        if params.json_schema is not None:
            constraints[("json_schema", params.json_schema)] = None
        if not _splittable(expr):
            if params.regex is not None:
                constraints[("regex", params.regex)] = None
            return expr
        literal, rest = split_literal_prefix(params.regex)
        constraints[("regex", rest if literal else params.regex)] = None
        if not literal:
            return expr
        stats["gens_split"] += 1
        stats["constant_chars"] += len(literal)
        parts: list[SglExpr] = [SglConstantText(literal)]
        if rest:
            inner = SglGen(expr.name, params.merged(params))
            inner.sampling_params.regex = rest
            parts.append(inner)
        if expr.name is None:
            return SglExprList(parts)
        return SglExprList([SglVarScopeBegin(expr.name), *parts, SglVarScopeEnd(expr.name)])
