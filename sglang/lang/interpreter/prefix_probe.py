"""Find the constant text a program sends before its first primitive, without running anything.

`run_batch` probes every submission and prefills their longest common prefix once, so the batch's
requests hit the prefix cache instead of all computing it at the same time. The probe runs the
body on a state that executes constant text and role markers and stops at the first thing that
would need the backend (gen, select, image, fork, a variable read).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from sglang.lang.backend.base_backend import BaseBackend
from sglang.lang.interpreter.program_state import ProgramState
from sglang.lang.interpreter.stream_executor import StreamExecutor
from sglang.lang.interpreter.stream_log import StateStore
from sglang.lang.ir import (SglConstantText, SglExpr, SglExprList, SglRoleBegin, SglRoleEnd,
                            SglSamplingParams)

_STATIC = (SglConstantText, SglRoleBegin, SglRoleEnd)


class _StopProbe(BaseException):
    """Raised into the body at its first dynamic step (BaseException: user `except Exception`
    blocks must not swallow it)."""


class _ProbeStore(StateStore):
    def get_var(self, name: str) -> Any:
        raise _StopProbe


class _ProbeExecutor(StreamExecutor):
    def __init__(self, backend: BaseBackend) -> None:
        super().__init__(backend, SglSamplingParams())
        self.store = _ProbeStore()

    def submit(self, expr: SglExpr) -> None:
        for item in expr.exprs if isinstance(expr, SglExprList) else [expr]:
            if not isinstance(item, _STATIC):
                raise _StopProbe
            self._execute(item)

    def sync(self) -> None:
        raise _StopProbe


def probe_text(backend: BaseBackend, feed: Callable[[ProgramState], Any]) -> str:
    """The text `feed(state)` builds before its first dynamic step ('' if it raises: the real
    run reports that)."""
    executor = _ProbeExecutor(backend)
    try:
        feed(ProgramState(executor))
    except _StopProbe:
        pass
    except Exception:
        return ""
    return executor.text_


def probe_prefix(func: Callable[..., Any], backend: BaseBackend, args: tuple, kwargs: dict) -> str:
    """The text `func(s, *args, **kwargs)` builds before its first dynamic step."""
    return probe_text(backend, lambda s: func(s, *args, **kwargs))


def common_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts) if texts else ""


def shared_batch_prefix(func: Callable[..., Any], backend: BaseBackend,
                        calls: list[tuple[tuple, dict]], min_chars: int = 16) -> Optional[str]:
    """The constant prefix every call shares, if long enough to be worth a prefill."""
    prefix = common_prefix([probe_prefix(func, backend, a, k) for a, k in calls])
    return prefix if len(prefix) >= min_chars else None
