"""`fn.compile()`: a traced, optimized program with the interpreter's run API.

When the program cannot be traced, compile() says why (a warning) and the compiled program runs
the interpreter instead, so callers never need two code paths.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Optional, Union

from sglang.compiler import batch_plan
from sglang.compiler.executor import bind_arguments, run_graph
from sglang.compiler.graph import ProgramGraph, format_graph, graph_to_dot
from sglang.compiler.passes import DEFAULT_PASSES, PassContext, load_pass
from sglang.compiler.tracer import TraceError, trace_program
from sglang.lang.backend.base_backend import CACHE_PREFIX, BaseBackend
from sglang.lang.global_config import resolve_backend
from sglang.lang.interpreter import run_program as runner
from sglang.lang.interpreter.program_state import ProgramState

if TYPE_CHECKING:
    from sglang.lang.function import SglFunction

logger = logging.getLogger(__name__)
PassSpec = Union[None, dict[str, bool], list[str], tuple[str, ...]]


def resolve_passes(passes: PassSpec) -> dict[str, bool]:
    """None: the defaults; a dict: overrides of the defaults; a list: exactly those passes."""
    if passes is None:
        return dict(DEFAULT_PASSES)
    chosen = dict.fromkeys(DEFAULT_PASSES, False) if isinstance(passes, (list, tuple)) else dict(DEFAULT_PASSES)
    items = {name: True for name in passes} if isinstance(passes, (list, tuple)) else passes
    for name, on in items.items():
        if name not in DEFAULT_PASSES:
            raise ValueError(f"unknown compiler pass {name!r}; passes: {', '.join(DEFAULT_PASSES)}")
        chosen[name] = bool(on)
    return chosen


class CompiledProgram:
    def __init__(self, function: "SglFunction", backend: Optional[BaseBackend] = None,
                 passes: PassSpec = None, **bound: Any) -> None:
        self.function = function
        self.backend = backend
        self.passes = resolve_passes(passes)
        self.stats: dict[str, dict[str, Any]] = {}
        self.fallback_reason: Optional[str] = None
        self.graph: Optional[ProgramGraph] = None
        try:
            self.graph = trace_program(function.func, {**function.bind_arguments, **bound})
        except TraceError as exc:
            self.fallback_reason = str(exc)
            logger.warning("sgl.compile: %s runs interpreted: %s", function.__name__, exc)
        self._optimized: dict[int, ProgramGraph] = {}

    @property
    def is_compiled(self) -> bool:
        return self.graph is not None

    def _graph_for(self, backend: BaseBackend) -> ProgramGraph:
        """The graph after the passes for this backend (passes depend on its capabilities)."""
        key = id(backend)
        if key not in self._optimized:
            graph = copy.deepcopy(self.graph)
            ctx = PassContext(backend, self.function.num_api_spec_tokens)
            for name, on in self.passes.items():
                if on:
                    self.stats[name] = load_pass(name).run(graph, ctx)
            self._optimized[key] = graph
        return self._optimized[key]

    def optimized_graph(self, backend: Any = None) -> ProgramGraph:
        if self.graph is None:
            raise RuntimeError(f"not compiled: {self.fallback_reason}")
        return self._graph_for(resolve_backend(backend or self.backend))

    # ------------------------------------------------------------------ running
    def run(self, *args: Any, backend: Any = None, stream: bool = False, **kwargs: Any
            ) -> ProgramState:
        from sglang.lang.function import RUN_DEFAULTS, _defaults

        if self.graph is None:
            return self.function.run(*args, backend=backend or self.backend, stream=stream, **kwargs)
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_DEFAULTS}
        be = resolve_backend(backend or self.backend)
        graph = self._graph_for(be)
        return run_graph(graph, be, bind_arguments(graph, args, kwargs), _defaults(sampling), stream)

    def run_batch(self, batch_kwargs: list[Any], *, backend: Any = None,
                  num_threads: Union[int, str] = "auto", progress_bar: bool = False,
                  generator_style: bool = False, **sampling: Any) -> Any:
        from sglang.lang.function import _defaults

        if self.graph is None:
            return self.function.run_batch(batch_kwargs, backend=backend or self.backend,
                                           num_threads=num_threads, progress_bar=progress_bar,
                                           generator_style=generator_style, **sampling)
        be = resolve_backend(backend or self.backend)
        graph = self._graph_for(be)
        arg_sets = [bind_arguments(graph, a, k) for a, k in runner.normalize_batch(batch_kwargs)]
        defaults = _defaults(sampling)
        order = list(range(len(arg_sets)))
        if self.passes.get("prefix_sharing") and be.has(CACHE_PREFIX) and len(arg_sets) > 1:
            order, hints = batch_plan.plan_batch(graph, be, arg_sets)
            batch_plan.warm(be, hints)
            self.stats.setdefault("prefix_sharing", {})["batch_prefill_hints"] = len(hints)
        return runner.run_in_threads(
            lambda i: run_graph(graph, be, arg_sets[i], defaults, capture_errors=True).sync(),
            len(arg_sets), num_threads, progress_bar, generator_style, order)

    # ------------------------------------------------------------------ inspection
    def graph_text(self, backend: Any = None) -> str:
        if self.graph is None:
            return f"(interpreted: {self.fallback_reason})"
        graph = self.optimized_graph(backend) if (backend or self.backend) else self.graph
        return format_graph(graph)

    def print_graph(self, backend: Any = None) -> None:
        print(self.graph_text(backend))

    def to_dot(self, backend: Any = None) -> str:
        if self.graph is None:
            raise RuntimeError(f"not compiled: {self.fallback_reason}")
        graph = self.optimized_graph(backend) if (backend or self.backend) else self.graph
        return graph_to_dot(graph, self.function.__name__)

    def __repr__(self) -> str:
        state = "compiled" if self.graph is not None else f"interpreted ({self.fallback_reason})"
        return f"<CompiledProgram {self.function.__name__}: {state}>"
