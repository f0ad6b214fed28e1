"""`fn.trace(**bound)`: run a program's body on tracer states and record a ProgramGraph.

Unbound arguments become placeholders; the body may add them to states, but not inspect them.
Anything that needs a runtime value (branching on a generated variable, formatting an argument
into an f-string, reading the text) raises TraceError with the reason, and compile() then falls
back to the interpreter.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sglang.compiler.graph import Fork, Join, ProgramGraph, SetVar, Submit, TracedVariable
from sglang.lang.interpreter.program_state import JOIN_MODES, ProgramStateGroup, StateBuilding
from sglang.lang.ir import SglArgument, to_expr


class TraceError(Exception):
    """The program cannot be represented as a graph; the message says why."""


@dataclass(eq=False)
class TracedArgument(SglArgument):
    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise TraceError(f"argument {self.name!r} is used as a Python value (f-string, str(), "
                         f"iteration, indexing or a condition); bind it with "
                         f"trace({self.name}=...) or add it to the state directly "
                         f"(s += {self.name})")

    __str__ = __format__ = __bool__ = __eq__ = __ne__ = __iter__ = __len__ = _refuse
    __getitem__ = __contains__ = __int__ = __float__ = _refuse
    __hash__ = object.__hash__

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._refuse()


class _Recorder:
    def __init__(self) -> None:
        self.ops: list[Any] = []
        self.num_streams = 1

    def new_stream(self) -> int:
        self.num_streams += 1
        return self.num_streams - 1


class TracerState(StateBuilding):
    """Stands in for ProgramState while tracing (same building API, no reads)."""

    is_program_state = True

    def __init__(self, recorder: _Recorder, stream: int) -> None:
        self._rec = recorder
        self.stream = stream

    def __iadd__(self, other: Any) -> "TracerState":
        self._rec.ops.append(Submit(self.stream, to_expr(other)))
        return self

    def __getitem__(self, name: str) -> TracedVariable:
        return TracedVariable(name, None, self.stream)

    def __setitem__(self, name: str, value: Any) -> None:
        self._rec.ops.append(SetVar(self.stream, name, value))

    def get_var(self, name: str) -> TracedVariable:
        return self[name]

    def set_var(self, name: str, value: Any) -> None:
        self[name] = value

    def _cannot(self, what: str) -> Any:
        raise TraceError(f"the program calls s.{what}() while running; its result depends on "
                         f"generation, so the program cannot be traced")

    def text(self) -> str:
        return self._cannot("text")

    def messages(self) -> Any:
        return self._cannot("messages")

    def sync(self) -> Any:
        return self._cannot("sync")

    def error(self) -> Any:
        return self._cannot("error")

    def get_meta_info(self, name: str) -> Any:
        return self._cannot("get_meta_info")

    def fork(self, size: int = 1, position_ids_offset: Optional[list[int]] = None) -> "TracerGroup":
        if not isinstance(size, int) or size < 1:
            raise TraceError(f"fork size must be a constant positive int, got {size!r}")
        children = [self._rec.new_stream() for _ in range(size)]
        self._rec.ops.append(Fork(self.stream, children))
        return TracerGroup([TracerState(self._rec, c) for c in children], self)

    def copy(self) -> "TracerState":
        return self.fork(1)[0]


class TracerGroup(ProgramStateGroup):
    """A traced fork: broadcasting `+=` as in ProgramStateGroup; join is recorded."""

    def join(self, mode: str = "gather_variable") -> None:
        if mode not in JOIN_MODES:
            raise ValueError(f"join mode must be one of {JOIN_MODES}, got {mode!r}")
        self.parent._rec.ops.append(Join(self.parent.stream, [s.stream for s in self.states], mode))


def trace_program(func: Callable[..., Any], bound: dict[str, Any]) -> ProgramGraph:
    """Trace `func(s, **args)`; arguments missing from `bound` become placeholders."""
    params = list(inspect.signature(func).parameters.values())[1:]
    names = [p.name for p in params]
    unknown = set(bound) - set(names)
    if unknown:
        raise TypeError(f"{func.__name__}() has no argument(s) {', '.join(sorted(unknown))}")
    kwargs = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TraceError(f"*args/**kwargs parameter {p.name!r} cannot be traced")
        kwargs[p.name] = bound.get(p.name, TracedArgument(p.name))
    recorder = _Recorder()
    result = func(TracerState(recorder, 0), **kwargs)
    if result is not None:
        raise TraceError("the program returns a value; compiled programs keep results in variables")
    return ProgramGraph(recorder.ops, names, dict(bound), recorder.num_streams)
