"""Run a ProgramGraph: replay its operations, in order, on interpreter states.

Replaying the recorded order keeps a compiled run's requests identical to an interpreted run's
(same prompts, same sampling), except where a pass deliberately changed the graph.
"""

from __future__ import annotations

from typing import Any

from sglang.compiler.graph import CacheHint, Fork, Join, ProgramGraph, SetVar, Submit, TracedVariable
from sglang.compiler.tracer import TracedArgument
from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.interpreter.program_state import ProgramState, ProgramStateGroup
from sglang.lang.interpreter.stream_executor import StreamExecutor
from sglang.lang.ir import (SglCommitLazy, SglConstantText, SglExpr, SglExprList,
                            SglImage, SglOrderIndependent, SglSamplingParams, SglSpecGen, SglVariable,
                            to_expr)


def bind_arguments(graph: ProgramGraph, args: tuple, kwargs: dict) -> dict[str, Any]:
    names = graph.arg_names
    if len(args) > len(names):
        raise TypeError(f"the program takes {len(names)} argument(s), got {len(args)} positional")
    values = {**graph.bound, **dict(zip(names, args))}
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"the program has no argument {key!r}")
        values[key] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise TypeError(f"missing argument(s): {', '.join(missing)}")
    return values


def substitute(expr: SglExpr, args: dict[str, Any], states: dict[int, ProgramState]) -> SglExpr:
    """The expression with argument placeholders and variable references made concrete."""
    if isinstance(expr, TracedArgument):
        return to_expr(args[expr.name])
    if isinstance(expr, TracedVariable):
        return SglVariable(expr.name, states[expr.stream])
    if isinstance(expr, SglExprList):
        return SglExprList([substitute(e, args, states) for e in expr.exprs])
    if isinstance(expr, SglOrderIndependent):
        return SglOrderIndependent([substitute(e, args, states) for e in expr.parts])
    if isinstance(expr, SglImage) and isinstance(expr.source, TracedArgument):
        return SglImage(args[expr.source.name])
    if isinstance(expr, SglSpecGen):
        return SglSpecGen([substitute(e, args, states) for e in expr.parts], expr.num_tokens)
    return expr


def _value(value: Any, states: dict[int, ProgramState]) -> Any:
    if isinstance(value, TracedVariable):
        return states[value.stream][value.name]
    return value


def run_graph(graph: ProgramGraph, backend: BaseBackend, args: dict[str, Any],
              default_params: SglSamplingParams, stream: bool = False,
              capture_errors: bool = False) -> ProgramState:
    """Replay the graph; an error is raised, or with `capture_errors` (run_batch) recorded as the
    state's error."""
    root = ProgramState(StreamExecutor(backend, default_params, stream=stream))
    states: dict[int, ProgramState] = {0: root}
    groups: dict[tuple[int, ...], ProgramStateGroup] = {}
    hinted: set[int] = set()  # streams whose next fork already got a cache hint
    try:
        for op in graph.ops:
            if isinstance(op, Submit):
                states[op.stream] += substitute(op.expr, args, states)
            elif isinstance(op, CacheHint):
                extra = "".join(e.value for e in op.extra if isinstance(e, SglConstantText))
                states[op.stream] += SglCommitLazy(extra)
                hinted.add(op.stream)
            elif isinstance(op, Fork):
                group = states[op.stream].fork(len(op.children), cache_hint=op.stream not in hinted)
                hinted.discard(op.stream)
                groups[tuple(op.children)] = group
                states.update(zip(op.children, group.states))
            elif isinstance(op, Join):
                groups[tuple(op.children)].join(op.mode)
            elif isinstance(op, SetVar):
                states[op.stream][op.name] = _value(op.value, states)
    except Exception as exc:
        root.executor.store.fail(exc)
        if not capture_errors:
            raise
    finally:
        root.executor.end()
    return root
