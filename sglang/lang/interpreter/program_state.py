"""What a program's body sees as `s`: ProgramState, and the group that `s.fork(n)` returns."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import Any, AsyncIterator, Iterator, Optional

from sglang.lang.global_config import global_config
from sglang.lang.interpreter.stream_executor import StreamExecutor
from sglang.lang.ir import (SglCommitLazy, SglConcateAndAppend, SglExpr, SglExprList,
                            SglRoleBegin, SglRoleEnd, SglVarScopeBegin, SglVarScopeEnd, to_expr)

JOIN_MODES = ("gather_variable", "concate_and_append")


class StateBuilding(ABC):
    """Role blocks and variable scopes on top of `+=`, shared by ProgramState and the tracer."""

    @abstractmethod
    def __iadd__(self, other: Any) -> Any:
        """Add an expression (each state kind says where it goes); returns the state."""

    def _role(self, role: str, expr: Any = None) -> Any:
        if expr is not None:
            self += SglExprList([SglRoleBegin(role), to_expr(expr), SglRoleEnd(role)])
            return None
        return self._block(SglRoleBegin(role), SglRoleEnd(role))

    @contextlib.contextmanager
    def _block(self, begin: SglExpr, end: SglExpr) -> Iterator[None]:
        self += begin
        try:
            yield
        finally:
            self += end

    def system(self, expr: Any = None) -> Any:
        """`s.system("...")` adds a system block; `with s.system():` opens one."""
        return self._role("system", expr)

    def user(self, expr: Any = None) -> Any:
        return self._role("user", expr)

    def assistant(self, expr: Any = None) -> Any:
        return self._role("assistant", expr)

    def var_scope(self, name: str) -> contextlib.AbstractContextManager:
        """`with s.var_scope("x"):` stores the text added inside the block as variable x."""
        return self._block(SglVarScopeBegin(name), SglVarScopeEnd(name))


class ProgramState(StateBuilding):
    is_program_state = True

    def __init__(self, executor: StreamExecutor) -> None:
        self.executor = executor
        self.ret_value: Any = None

    # ------------------------------------------------------------------ building
    def __iadd__(self, other: Any) -> "ProgramState":
        self.executor.submit(to_expr(other))
        return self

    # ------------------------------------------------------------------ reading
    def __getitem__(self, name: str) -> Any:
        return self.executor.store.get_var(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.executor.set_var(name, value)

    def __contains__(self, name: str) -> bool:
        self.sync()
        return name in self.executor.store.variables

    def get_var(self, name: str) -> Any:
        return self[name]

    def set_var(self, name: str, value: Any) -> None:
        self[name] = value

    def get_meta_info(self, name: str) -> Any:
        self[name]  # waits for it (and raises if it cannot exist)
        return self.executor.store.meta_info.get(name)

    def sync(self) -> "ProgramState":
        self.executor.sync()
        return self

    def error(self) -> Optional[BaseException]:
        self.sync()
        return self.executor.store.error

    def text(self) -> str:
        self.sync()
        return self.executor.text_

    def messages(self) -> list[dict[str, Any]]:
        self.sync()
        return list(self.executor.messages_)

    def variables(self) -> dict[str, Any]:
        self.sync()
        return dict(self.executor.store.variables)

    def text_iter(self, var_name: Optional[str] = None) -> Iterator[str]:
        """Text as it is produced (stream=True), else the final text once; `var_name` limits it
        to one variable. The pieces concatenate to the final text/value."""
        if self.executor.stream:
            yield from self.executor.store.iter_chunks(var_name)
        else:
            yield self.text() if var_name is None else str(self[var_name])

    async def text_async_iter(self, var_name: Optional[str] = None,
                              return_meta_data: bool = False) -> AsyncIterator[Any]:
        """`text_iter` for asyncio: the wait for each piece runs off the event loop."""
        loop = asyncio.get_running_loop()
        it = self.text_iter(var_name)
        done = object()
        while True:
            chunk = await loop.run_in_executor(None, next, it, done)
            if chunk is done:
                return
            if return_meta_data:
                meta = self.executor.store.meta_info.get(var_name) if var_name else None
                yield chunk, meta
            else:
                yield chunk

    # ------------------------------------------------------------------ parallelism
    def fork(self, size: int = 1, position_ids_offset: Optional[list[int]] = None,
             cache_hint: Optional[bool] = None) -> "ProgramStateGroup":
        """`size` copies of this state that continue independently.

        The shared prefix is sent to the backend first (a prefill-only request), so every child's
        requests hit the prefix cache instead of racing to compute it.
        """
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"fork(size) needs a positive integer, got {size!r}")
        if cache_hint is None:
            cache_hint = global_config.enable_fork_prefix_hint
        if size > 1 and cache_hint:
            self.executor.submit(SglCommitLazy())
        self.sync()
        if self.executor.store.error is not None:
            raise RuntimeError("cannot fork a failed program state") from self.executor.store.error
        children = [ProgramState(StreamExecutor(self.executor.backend, self.executor.default_params,
                                                self.executor.stream, parent=self.executor))
                    for _ in range(size)]
        self.executor.children += [child.executor for child in children]
        return ProgramStateGroup(children, self)

    def copy(self) -> "ProgramState":
        return self.fork(1)[0]

    def end(self) -> None:
        self.executor.end()

    def __repr__(self) -> str:
        return f"ProgramState({self.text()!r})"


class ProgramStateGroup:
    """The states of one fork. `+=` broadcasts: an expression to all, a callable `f(i)` or a list
    item by item."""

    def __init__(self, states: list[ProgramState], parent: ProgramState) -> None:
        self.states = states
        self.parent = parent

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, state: ProgramState) -> None:
        """`forks[i] += expr` ends by storing `forks[i]` back: accept that same state only, a
        fork's states are fixed (their executors are the ones join waits for)."""
        if state is not self.states[i]:
            raise TypeError(f"forks[{i}] cannot be replaced by another object; add to it with "
                            f"forks[i] += expr")

    def __iadd__(self, other: Any) -> "ProgramStateGroup":
        if callable(other) and not isinstance(other, SglExpr):
            for i, state in enumerate(self.states):
                state += other(i)
        elif isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise ValueError(f"a list added to a fork of {len(self.states)} needs "
                                 f"{len(self.states)} items, got {len(other)}")
            for state, item in zip(self.states, other):
                state += item
        else:
            for state in self.states:
                state += other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """Wait for the children; their variables land in the parent as lists in child order.
        'concate_and_append' also appends each child's new text to the parent (reusing the
        children's KV on backends that can)."""
        if mode not in JOIN_MODES:
            raise ValueError(f"join mode must be one of {JOIN_MODES}, got {mode!r}")
        for state in self.states:
            state.executor.end()
            state.sync()
        names: list[str] = []
        for state in self.states:
            names += [n for n in state.executor.own_vars if n not in names]
        for name in names:
            values = [state.executor.store.variables.get(name) for state in self.states]
            self.parent.executor.set_var(name, values)
        if mode == "concate_and_append":
            self.parent.executor.submit(SglConcateAndAppend(list(self.states)))

    def sync(self) -> None:
        for state in self.states:
            state.sync()

