"""`@sgl.function`: a Python function whose first parameter is the program state."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Union

from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.global_config import resolve_backend
from sglang.lang.interpreter import run_program as runner
from sglang.lang.interpreter.program_state import ProgramState
from sglang.lang.ir import SglSamplingParams

# Defaults of `run`/`run_batch` for every gen that leaves a parameter unset (upstream's values).
RUN_DEFAULTS: dict[str, Any] = dict(
    max_new_tokens=128, stop=None, stop_token_ids=None, temperature=1.0, top_p=1.0, top_k=-1,
    min_p=0.0, frequency_penalty=0.0, presence_penalty=0.0, ignore_eos=False,
    return_logprob=False, logprob_start_len=None, top_logprobs_num=None,
    return_text_in_logprobs=None)


def _defaults(overrides: dict[str, Any]) -> SglSamplingParams:
    unknown = set(overrides) - set(RUN_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown run() argument(s): {', '.join(sorted(unknown))}; sampling "
                        f"defaults are {', '.join(RUN_DEFAULTS)}")
    values = {**RUN_DEFAULTS, **overrides}
    return SglSamplingParams(**values)


class SglFunction:
    def __init__(self, func: Callable[..., Any], num_api_spec_tokens: Optional[int] = None,
                 bind_arguments: Optional[dict[str, Any]] = None) -> None:
        params = list(inspect.signature(func).parameters)
        if not params:
            raise TypeError(f"@sgl.function {func.__name__} must take the program state as its "
                            f"first parameter, e.g. def {func.__name__}(s, ...)")
        if num_api_spec_tokens is not None and (not isinstance(num_api_spec_tokens, int)
                                                or num_api_spec_tokens < 1):
            raise ValueError(f"num_api_spec_tokens must be a positive int, got {num_api_spec_tokens!r}")
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = dict(bind_arguments or {})
        self.arg_names = params[1:]
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def bind(self, **kwargs: Any) -> "SglFunction":
        """A copy with some arguments fixed."""
        unknown = set(kwargs) - set(self.arg_names)
        if unknown and not self._takes_var_kwargs():
            raise TypeError(f"{self.__name__}() has no argument(s) {', '.join(sorted(unknown))}")
        return SglFunction(self.func, self.num_api_spec_tokens, {**self.bind_arguments, **kwargs})

    def _takes_var_kwargs(self) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD
                   for p in inspect.signature(self.func).parameters.values())

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self.bind_arguments, **kwargs}

    # ------------------------------------------------------------------ running
    def run(self, *args: Any, stream: bool = False, backend: Optional[BaseBackend] = None,
            **kwargs: Any) -> ProgramState:
        """Run once; returns the state at once (reads block until values exist)."""
        be = resolve_backend(backend)
        spec = self._spec_program(be)
        if spec is not None:
            return spec.run(*args, stream=stream, **kwargs)
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_DEFAULTS}
        return runner.run_program(self.func, be, args, self._kwargs(kwargs),
                                  _defaults(sampling), stream=stream)

    def _spec_program(self, backend: BaseBackend) -> Any:
        """With `num_api_spec_tokens` on an API backend (no prefix cache): the program compiled
        with only API speculative execution, which merges gens into one call; else None (also
        when the program cannot be traced: then it runs interpreted, call by call)."""
        from sglang.lang.backend.base_backend import CACHE_PREFIX
        if not self.num_api_spec_tokens or backend.has(CACHE_PREFIX):
            return None
        cache = self.__dict__.setdefault("_spec_cache", {})
        if id(backend) not in cache:
            cache[id(backend)] = self.compile(backend, passes=["api_speculative"])
        return cache[id(backend)] if cache[id(backend)].is_compiled else None

    def run_batch(self, batch_kwargs: list[Any], *, backend: Optional[BaseBackend] = None,
                  num_threads: Union[int, str] = "auto", progress_bar: bool = False,
                  generator_style: bool = False, **sampling: Any) -> Any:
        """Run every submission (a dict of arguments each); states come back in input order.
        The submissions' common constant prefix is prefilled once before they start."""
        be = resolve_backend(backend)
        spec = self._spec_program(be)
        if spec is not None:
            return spec.run_batch(
                batch_kwargs, num_threads=num_threads, progress_bar=progress_bar,
                generator_style=generator_style, **sampling)
        calls = [(a, self._kwargs(k)) for a, k in runner.normalize_batch(batch_kwargs)]
        return runner.run_program_batch(self.func, be, calls,
                                        _defaults(sampling), num_threads, progress_bar,
                                        generator_style)

    async def run_async(self, *args: Any, backend: Optional[BaseBackend] = None,
                        **kwargs: Any) -> ProgramState:
        """`await fn.run_async(...)`: the finished state, without blocking the event loop."""
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_DEFAULTS}
        return await runner.run_program_async(self.func, resolve_backend(backend), args,
                                               self._kwargs(kwargs), _defaults(sampling))

    async def run_batch_async(self, batch_kwargs: list[Any], *,
                              backend: Optional[BaseBackend] = None,
                              num_threads: Union[int, str] = "auto",
                              **sampling: Any) -> list[ProgramState]:
        calls = [(a, self._kwargs(k)) for a, k in runner.normalize_batch(batch_kwargs)]
        return await runner.run_program_batch_async(self.func, resolve_backend(backend), calls,
                                                    _defaults(sampling), num_threads)

    # ------------------------------------------------------------------ compiling
    def trace(self, **bound_args: Any) -> Any:
        """The program as a graph (sglang.compiler); unbound arguments become placeholders."""
        from sglang.compiler.tracer import trace_program
        return trace_program(self.func, {**self.bind_arguments, **bound_args})

    def compile(self, backend: Optional[BaseBackend] = None, passes: Any = None,
                **bound_args: Any) -> Any:
        """A CompiledProgram with the same run/run_batch API (interpreted if untraceable)."""
        from sglang.compiler.compiled_program import CompiledProgram
        return CompiledProgram(self, backend, passes, **bound_args)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside another program: `my_fn(s, ...)` continues on the caller's state."""
        if args and getattr(args[0], "is_program_state", False):  # ProgramState or tracer
            return self.func(args[0], *args[1:], **self._kwargs(kwargs))
        raise TypeError(f"call {self.__name__}.run(...) to run a program, or pass a program "
                        f"state first to call it from another program")

    def __repr__(self) -> str:
        return f"<SglFunction {self.__name__}({', '.join(self.arg_names)})>"
