"""Variables and streamed text of one program state, shared between its worker and readers.

The worker thread writes; user threads block on reads. One condition variable guards it all, so a
reader can wait for "variable ready, or nothing left that could produce it, or an error".
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional


class ProgramError(RuntimeError):
    """A program state failed; raised when its variables are read."""


class StateStore:
    def __init__(self, variables: Optional[dict[str, Any]] = None) -> None:
        self.cv = threading.Condition()
        self.variables: dict[str, Any] = dict(variables or {})
        self.meta_info: dict[str, Any] = {}
        self.pending = 0          # submitted expressions not yet executed
        self.error: Optional[BaseException] = None
        self.chunks: list[tuple[Optional[str], str]] = []  # (variable or None, text) in order
        self.finished = False     # the program ended and every expression ran

    # ------------------------------------------------------------ writer side (worker thread)
    def _notify(self, update: Callable[[], None]) -> None:
        with self.cv:
            update()
            self.cv.notify_all()

    def set_var(self, name: str, value: Any, meta: Any = None) -> None:
        def update() -> None:
            self.variables[name] = value
            if meta is not None:
                self.meta_info[name] = meta
        self._notify(update)

    def add_chunk(self, var: Optional[str], text: str) -> None:
        if text:
            self._notify(lambda: self.chunks.append((var, text)))

    def fail(self, error: BaseException) -> None:
        def update() -> None:
            if self.error is None:
                self.error = error
        self._notify(update)

    def begin(self) -> None:
        self._notify(lambda: setattr(self, "pending", self.pending + 1))

    def done_one(self) -> None:
        self._notify(lambda: setattr(self, "pending", self.pending - 1))

    def set_finished(self, value: bool) -> None:
        self._notify(lambda: setattr(self, "finished", value))

    # ------------------------------------------------------------ reader side
    def wait_idle(self) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.pending == 0)

    def get_var(self, name: str) -> Any:
        with self.cv:
            self.cv.wait_for(lambda: name in self.variables or self.pending == 0
                             or self.error is not None)
            if name in self.variables:
                return self.variables[name]
            if self.error is not None:
                raise ProgramError(f"variable {name!r} was not produced: the program failed "
                                   f"with {type(self.error).__name__}: {self.error}") from self.error
            known = ", ".join(sorted(self.variables)) or "none"
            raise KeyError(f"the program has no variable {name!r} (variables: {known})")

    def iter_chunks(self, var: Optional[str]) -> Iterator[str]:
        """Streamed text (all of it, or one variable's) until that text is complete."""
        pos = 0
        while True:
            with self.cv:
                self.cv.wait_for(lambda: len(self.chunks) > pos or self._stream_over(var))
                new = self.chunks[pos:]
                pos = len(self.chunks)
                over = self._stream_over(var)
            for chunk_var, text in new:
                if var is None or chunk_var == var:
                    yield text
            if over and pos == len(self.chunks):
                return

    def _stream_over(self, var: Optional[str]) -> bool:
        if self.error is not None or self.finished:
            return True
        return var is not None and var in self.variables
