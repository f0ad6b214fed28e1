"""The detokenizer process: scheduler token ids in, stable text deltas out.

`DetokenizerManager.handle` does the work without sockets (unit-testable); `DetokenizerLoop` is
the thin ZMQ loop around it, and `run_detokenizer_process` the multiprocessing entry point.

Stop strings: the scheduler decides when a request finishes (it checks stop strings itself).
Here the text is trimmed: a finish by stop string cuts the text at the first occurrence of the
matched string, and while streaming anything that is or may become stop text is held back, so
the streamed deltas always concatenate to exactly the final, non-streamed text.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Dict, List, Optional, Set

import zmq

from sglang.runtime.managers.child_process import ParentWatch, exit_orphaned, exit_when_parent_dies, new_zmq_context
from sglang.runtime.managers.incremental_detokenizer import IncrementalDetokenizer
from sglang.runtime.managers.io_struct import BatchStrOut, BatchTokenOut, StrOut, TokenOut, finish_abort
from sglang.runtime.managers.stop_checker import StopStringMatcher
from sglang.runtime.server_args import PortArgs, ServerArgs
from sglang.runtime.utils import configure_logging, load_server_tokenizer

logger = logging.getLogger(__name__)

_IDLE_POLL_MS = 100  # how often an idle loop wakes up to check that its parent is alive


class RequestTextStream:
    """Per-request state: incremental detokenizer + stop-string hold-back.

    `pending` is decoded text not yet emitted. Emitted text never contains the start of a stop
    string (unless no_stop_trim), so the stop search and the final cut only need `pending`,
    which keeps every step O(new text + longest stop string).
    """

    def __init__(self, tokenizer: Any, first: TokenOut) -> None:
        self.detokenizer = IncrementalDetokenizer(
            tokenizer,
            skip_special_tokens=first.skip_special_tokens,
            spaces_between_special_tokens=first.spaces_between_special_tokens,
        )
        self.no_stop_trim = first.no_stop_trim
        self.matcher = StopStringMatcher(None if first.no_stop_trim else first.stop_strs)
        self.pending = ""
        self.scanned = 0  # pending[:scanned] has been searched for stop strings
        self.stop_at: Optional[int] = None  # start of the first stop string found in pending

    def step(self, out: TokenOut) -> str:
        """Feed one TokenOut; return the text delta that may be shown now."""
        if out.finished_reason is None:
            self._append(self.detokenizer.add(out.new_ids))
            return self._emit(self._streamable_len())
        ids = out.new_ids
        if _drops_matched_token(out.finished_reason, ids, self.no_stop_trim):
            ids = ids[:-1]  # the stop token stays in the output ids but is not shown as text
        self._append(self.detokenizer.add(ids) + self.detokenizer.flush())
        return self._emit(self._final_len(out.finished_reason))

    def _append(self, text: str) -> None:
        if not text:
            return
        self.pending += text
        if self.matcher and self.stop_at is None:
            hit = self.matcher.find(self.pending, self.scanned)
            if hit is not None:
                self.stop_at = hit[0]
        self.scanned = len(self.pending)

    def _streamable_len(self) -> int:
        if not self.matcher:
            return len(self.pending)
        if self.stop_at is not None:
            return self.stop_at  # nothing past a stop string is streamed before the finish
        return self.matcher.safe_prefix_len(self.pending)

    def _final_len(self, reason: Dict[str, Any]) -> int:
        matched = reason.get("matched")
        if reason.get("type") != "stop" or not isinstance(matched, str) or not matched or self.no_stop_trim:
            return len(self.pending)
        cut = self.pending.find(matched)
        return len(self.pending) if cut < 0 else cut

    def _emit(self, n: int) -> str:
        text, self.pending = self.pending[:n], self.pending[n:]
        self.scanned = max(0, self.scanned - n)
        if self.stop_at is not None:
            self.stop_at -= n
        return text


def _drops_matched_token(reason: Dict[str, Any], ids: List[int], no_stop_trim: bool) -> bool:
    matched = reason.get("matched")
    is_token = isinstance(matched, int) and not isinstance(matched, bool)
    return reason.get("type") == "stop" and is_token and not no_stop_trim and bool(ids) and ids[-1] == matched


class DetokenizerManager:
    """Turns BatchTokenOut into BatchStrOut; forwards every other message unchanged."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer  # None with --skip-tokenizer-init: text deltas are ""
        self.streams: Dict[str, RequestTextStream] = {}
        self.failed: Set[str] = set()  # rids aborted here whose remaining TokenOuts are dropped

    def handle(self, msg: Any) -> List[Any]:
        if not isinstance(msg, BatchTokenOut):
            return [msg]
        outputs = [s for s in (self._handle_one(out) for out in msg.outputs) if s is not None]
        return [BatchStrOut(outputs)] if outputs else []

    def _handle_one(self, out: TokenOut) -> Optional[StrOut]:
        if out.rid in self.failed:
            if out.finished_reason is not None:
                self.failed.discard(out.rid)
            return None
        try:
            return _str_out(out, self._text_delta(out))
        except Exception as exc:  # one bad request must not take the detokenizer down
            logger.error("detokenizer failed on request %s: %s", out.rid, traceback.format_exc())
            self.streams.pop(out.rid, None)
            if out.finished_reason is None:
                self.failed.add(out.rid)
            message = f"detokenization failed: {type(exc).__name__}: {exc}"
            reason = finish_abort(message, status_code=500, err_type="InternalServerError")
            return _str_out(out, "", finished_reason=reason)

    def _text_delta(self, out: TokenOut) -> str:
        if self.tokenizer is None:
            return ""
        stream = self.streams.get(out.rid)
        if stream is None:
            stream = RequestTextStream(self.tokenizer, out)
            if out.finished_reason is None:
                self.streams[out.rid] = stream
        delta = stream.step(out)
        if out.finished_reason is not None:
            self.streams.pop(out.rid, None)
        return delta


def _str_out(out: TokenOut, text_delta: str, finished_reason: Optional[dict] = None) -> StrOut:
    return StrOut(
        rid=out.rid,
        text_delta=text_delta,
        new_ids=out.new_ids,
        finished_reason=finished_reason if finished_reason is not None else out.finished_reason,
        prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens,
        cached_tokens=out.cached_tokens,
        logprobs=out.logprobs,
        extra_meta=out.extra_meta,
    )


# ---------------------------------------------------------------- process


class DetokenizerLoop:
    """PULL from the scheduler, PUSH to the tokenizer manager; returns when the parent is gone."""

    def __init__(self, manager: DetokenizerManager, port_args: PortArgs, parent_pid: int) -> None:
        self.manager = manager
        self.parent = ParentWatch(parent_pid)
        self.ctx = new_zmq_context()
        self.recv = self.ctx.socket(zmq.PULL)
        self.recv.bind(port_args.detokenizer_ipc)
        self.send = self.ctx.socket(zmq.PUSH)
        self.send.connect(port_args.tokenizer_ipc)

    def run(self) -> None:
        try:
            while self.parent.alive():
                if self.recv.poll(_IDLE_POLL_MS):
                    self._serve_one()
        finally:
            self.close()

    def _serve_one(self) -> None:
        try:
            replies = self.manager.handle(self.recv.recv_pyobj())
        except Exception:  # e.g. an unpicklable message: drop it, keep serving the others
            logger.error("detokenizer dropped a message it could not handle: %s", traceback.format_exc())
            return
        for reply in replies:
            self.send.send_pyobj(reply)

    def close(self) -> None:
        self.ctx.destroy(linger=0)  # closes both sockets; never waits for undelivered messages


def run_detokenizer_process(server_args: ServerArgs, port_args: PortArgs, pipe_writer: Any) -> None:
    """Entry point of the detokenizer subprocess (multiprocessing 'spawn' target).

    Sends "ready" through `pipe_writer` once the tokenizer is loaded and the sockets are up, or
    an error string saying what failed. Exits when its parent is gone (see child_process.py).
    """
    configure_logging(server_args.log_level, prefix="detokenizer")
    parent = ParentWatch()
    try:
        loop = DetokenizerLoop(DetokenizerManager(load_server_tokenizer(server_args)), port_args, parent.pid)
    except Exception as exc:
        logger.error("detokenizer failed to start: %s", traceback.format_exc())
        pipe_writer.send(f"detokenizer failed to start: {type(exc).__name__}: {exc}")
        return
    exit_when_parent_dies("detokenizer", port_args, parent)
    pipe_writer.send("ready")
    loop.run()
    exit_orphaned("detokenizer", port_args)  # run() returns only once the parent is gone
