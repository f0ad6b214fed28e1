"""Executes one program state's expressions in order on a backend, in a worker thread.

The user's Python body only enqueues (`s += ...`), so it runs ahead while primitives execute;
reads (`s["x"]`, `s.text()`) block on the StateStore. An error stops the state: later expressions
are skipped and every read raises ProgramError, so nothing waits forever.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Optional

from sglang.lang.backend.base_backend import (CACHE_PREFIX, CONCAT_AND_APPEND, BaseBackend, Prompt)
from sglang.lang.image_io import load_image, load_video_frames
from sglang.lang.interpreter.stream_log import StateStore
from sglang.lang.ir import (SglCommitLazy, SglConcateAndAppend, SglConstantText, SglExpr,
                            SglExprList, SglGen, SglImage, SglOrderIndependent,
                            SglRoleBegin, SglRoleEnd,
                            SglSamplingParams, SglSelect, SglSpecGen, SglVariable, SglVarScopeBegin,
                            SglVarScopeEnd, SglVideo)

IMAGE_PLACEHOLDER = "<image>"  # marks an image's place in the text when the template has none
_END = object()


class StreamExecutor:
    def __init__(self, backend: BaseBackend, default_params: SglSamplingParams,
                 stream: bool = False, parent: Optional["StreamExecutor"] = None) -> None:
        self.backend = backend
        self.default_params = default_params
        self.stream = stream
        self.chat_template = parent.chat_template if parent else backend.get_chat_template()
        self.image_token = self.chat_template.image_token or IMAGE_PLACEHOLDER
        self.text_ = parent.text_ if parent else ""
        self.messages_: list[dict[str, Any]] = list(parent.messages_) if parent else []
        self.images_ = list(parent.images_) if parent else []
        self.cur_role: Optional[str] = parent.cur_role if parent else None
        self.role_begin_pos = parent.role_begin_pos if parent else 0
        self.role_images = list(parent.role_images) if parent else []
        self.scope_starts: dict[str, int] = dict(parent.scope_starts) if parent else {}
        self.store = StateStore(parent.store.variables if parent else None)
        self.own_vars: list[str] = []  # variables set by this state (what join gathers)
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._worker_lock = threading.Lock()
        self._ended = True
        self.children: list[StreamExecutor] = []  # forks, ended with this state

    # ------------------------------------------------------------------ lifecycle
    def submit(self, expr: SglExpr) -> None:
        self.store.begin()
        with self._worker_lock:
            if self._ended:  # (re)start: a new worker waits for the previous one to drain
                self._ended = False
                self.store.set_finished(False)
                self._worker = threading.Thread(target=self._run, args=(self._worker,),
                                                daemon=True, name="sgl-state")
                self._worker.start()
        self._queue.put(expr)

    def end(self) -> None:
        """No more expressions for now: the worker exits once it has run what is queued."""
        for child in self.children:
            child.end()
        with self._worker_lock:
            if self._ended:
                self.store.set_finished(True)
                return
            self._ended = True
            self._queue.put(_END)

    def sync(self) -> None:
        self.store.wait_idle()

    def _run(self, previous: Optional[threading.Thread]) -> None:
        if previous is not None:
            previous.join()
        while True:
            expr = self._queue.get()
            if expr is _END:
                self.store.set_finished(True)
                return
            try:
                if self.store.error is None:
                    self._execute(expr)
            except BaseException as exc:  # surfaced via error() and variable reads
                self.store.fail(exc)
            finally:
                self.store.done_one()

    # ------------------------------------------------------------------ helpers
    def prompt(self) -> Prompt:
        return Prompt(self.text_, list(self.messages_), list(self.images_), self.cur_role)

    def set_var(self, name: str, value: Any, meta: Any = None) -> None:
        if name not in self.own_vars:
            self.own_vars.append(name)
        self.store.set_var(name, value, meta)

    def _append(self, text: str, var: Optional[str] = None) -> None:
        self.text_ += text
        self.store.add_chunk(var, text)

    # ------------------------------------------------------------------ execution
    def _execute(self, expr: SglExpr) -> None:
        handler = _HANDLERS.get(type(expr))
        if handler is None:
            raise TypeError(f"cannot execute {type(expr).__name__} in the interpreter")
        handler(self, expr)

    def _exec_list(self, expr: SglExprList) -> None:
        for sub in expr.exprs:
            self._execute(sub)

    def _exec_text(self, expr: SglConstantText) -> None:
        self._append(expr.value)

    def _exec_variable(self, expr: SglVariable) -> None:
        self._append(str(expr.source.get_var(expr.name)))

    def _gen_prompt(self, what: str) -> Prompt:
        if self.backend.is_chat_model:
            if self.cur_role != "assistant" or self.text_[self.role_begin_pos:]:
                raise ValueError(f"{what} on a chat model must be the first thing in an assistant "
                                 f"block, e.g. s += sgl.assistant(sgl.gen('answer'))")
        return self.prompt()

    def _gen_params(self, expr: SglGen) -> SglSamplingParams:
        params = expr.sampling_params.merged(self.default_params)
        if self.cur_role is not None and self.chat_template.stop_str and not params.is_constrained():
            stops = params.stop if isinstance(params.stop, list) else ([params.stop] if params.stop else [])
            params.stop = stops + [s for s in self.chat_template.stop_str if s not in stops]
        return params

    def _exec_gen(self, expr: SglGen) -> None:
        prompt, params = self._gen_prompt("gen"), self._gen_params(expr)
        if self.stream and (params.n or 1) == 1:
            text, meta = "", {}
            for delta, meta in self.backend.generate_stream(prompt, params):
                text += delta
                self._append(delta, expr.name)
            value: Any = text
        else:
            result = self.backend.generate(prompt, params)
            self._append(result.text, expr.name)
            value, meta = (result.texts if result.texts and len(result.texts) > 1 else result.text,
                           result.meta_info)
        if expr.name is not None:
            self.set_var(expr.name, value, meta)

    def _exec_select(self, expr: SglSelect) -> None:
        decision = self.backend.select(self._gen_prompt("select"), expr.choices, expr.temperature,
                                       expr.choices_method)
        if decision.decision not in expr.choices:
            raise RuntimeError(f"backend returned {decision.decision!r}, not one of the choices")
        self._append(decision.decision, expr.name)
        if expr.name is not None:
            self.set_var(expr.name, decision.decision, decision.meta_info)

    def _exec_role_begin(self, expr: SglRoleBegin) -> None:
        if self.cur_role is not None:
            raise ValueError(f"role blocks cannot nest: {expr.role!r} inside {self.cur_role!r}")
        prefix, _ = self.chat_template.get_prefix_and_suffix(expr.role, self.messages_)
        self._append(prefix)
        self.cur_role, self.role_begin_pos, self.role_images = expr.role, len(self.text_), []

    def _exec_role_end(self, expr: SglRoleEnd) -> None:
        if self.cur_role != expr.role:
            raise ValueError(f"{expr.role}_end without a matching {expr.role}_begin "
                             f"(open block: {self.cur_role})")
        # As upstream: a message's content drops leading whitespace (the prompt text keeps it).
        content = self.text_[self.role_begin_pos:].lstrip()
        _, suffix = self.chat_template.get_prefix_and_suffix(expr.role, self.messages_)
        self.messages_.append({"role": expr.role, "content": self._message_content(content)})
        self._append(suffix)
        self.cur_role, self.role_images = None, []

    def _message_content(self, content: str) -> Any:
        """Plain text, or OpenAI parts with each image where its token sits in the text."""
        if not self.role_images:
            return content
        parts: list[dict[str, Any]] = []
        pieces = content.split(self.image_token)
        for i, piece in enumerate(pieces):
            if piece:
                parts.append({"type": "text", "text": piece})
            if i < len(self.role_images) and i < len(pieces) - 1:
                parts.append({"type": "image_url", "image_url": {"url": self.role_images[i].to_url()}})
        return parts

    def _add_image(self, image: Any) -> None:
        self.images_.append(image)
        self.role_images.append(image)
        self._append(self.image_token)

    def _exec_image(self, expr: SglImage) -> None:
        self._add_image(load_image(expr.source))

    def _exec_video(self, expr: SglVideo) -> None:
        for frame in load_video_frames(expr.path, expr.num_frames):
            self._add_image(frame)

    def _exec_scope_begin(self, expr: SglVarScopeBegin) -> None:
        self.scope_starts[expr.name] = len(self.text_)

    def _exec_scope_end(self, expr: SglVarScopeEnd) -> None:
        if expr.name not in self.scope_starts:
            raise ValueError(f"var_scope {expr.name!r} ended without beginning")
        self.set_var(expr.name, self.text_[self.scope_starts.pop(expr.name):])

    def _exec_commit(self, expr: SglCommitLazy) -> None:
        if self.backend.has(CACHE_PREFIX) and self.text_ + expr.extra_text:
            prompt = self.prompt()
            prompt.text += expr.extra_text
            self.backend.cache_prefix(prompt)

    def _exec_order_independent(self, expr: SglOrderIndependent) -> None:
        for part in expr.parts:
            self._execute(part)

    def _exec_spec_gen(self, expr: SglSpecGen) -> None:
        from sglang.lang.interpreter.spec_gen import run_spec_gen  # only programs that use it
        run_spec_gen(self, expr)

    def _exec_concat(self, expr: SglConcateAndAppend) -> None:
        children = [state.executor for state in expr.states]
        for child in children:
            child.sync()
            if child.store.error is not None:
                raise RuntimeError("a forked state failed") from child.store.error
        if self.backend.has(CONCAT_AND_APPEND):
            meta = self.backend.concatenate_and_append(self.prompt(), [c.prompt() for c in children])
            self.store.meta_info["concate_and_append"] = meta
        base = self.text_
        for child in children:
            if not child.text_.startswith(base):
                raise ValueError("concate_and_append: a child no longer extends the parent's text")
            self._append(child.text_[len(base):])


_HANDLERS = {
    SglExprList: StreamExecutor._exec_list,
    SglConstantText: StreamExecutor._exec_text,
    SglVariable: StreamExecutor._exec_variable,
    SglGen: StreamExecutor._exec_gen,
    SglSelect: StreamExecutor._exec_select,
    SglRoleBegin: StreamExecutor._exec_role_begin,
    SglRoleEnd: StreamExecutor._exec_role_end,
    SglImage: StreamExecutor._exec_image,
    SglVideo: StreamExecutor._exec_video,
    SglVarScopeBegin: StreamExecutor._exec_scope_begin,
    SglVarScopeEnd: StreamExecutor._exec_scope_end,
    SglCommitLazy: StreamExecutor._exec_commit,
    SglConcateAndAppend: StreamExecutor._exec_concat,
    SglOrderIndependent: StreamExecutor._exec_order_independent,
    SglSpecGen: StreamExecutor._exec_spec_gen,
}
