"""DetokenizerManager: text deltas, stop-string trimming and hold-back, message forwarding,
error isolation, and the real subprocess over ZMQ."""

from __future__ import annotations

import multiprocessing
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers import detokenizer_manager as dm
from sglang.runtime.managers.detokenizer_manager import DetokenizerLoop, DetokenizerManager, run_detokenizer_process
from sglang.runtime.managers.io_struct import (
    BatchStrOut,
    BatchTokenOut,
    FlushCacheReply,
    LogprobDelta,
    ServerStateReply,
    StrOut,
    TokenOut,
    finish_length,
    finish_matched_str,
    finish_matched_token,
)
from sglang.runtime.server_args import PortArgs, ServerArgs
from tests.unit.test_incremental_detokenizer import build_tokenizer, chunk_sizes, id_lists, split

EOS = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("detok_tokenizer"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return build_tokenizer(tokenizer_dir)


def token_out(rid: str, ids: Sequence[int], reason: Optional[dict] = None, **options: Any) -> TokenOut:
    return TokenOut(rid=rid, new_ids=list(ids), finished_reason=reason, prompt_tokens=3,
                    completion_tokens=len(ids), cached_tokens=1, **options)


def outputs(replies: List[Any]) -> List[StrOut]:
    assert all(isinstance(r, BatchStrOut) for r in replies)
    return [o for r in replies for o in r.outputs]


# ---------------------------------------------------------------- a scheduler stand-in


def scheduler_finish(tokenizer, ids: List[int], stops: List[str], skip: bool) -> Tuple[List[int], dict]:
    """Where a scheduler would stop `ids`: at EOS, at the first stop string, or at the end."""
    eos = tokenizer.convert_tokens_to_ids(EOS)
    for t in range(1, len(ids) + 1):
        if ids[t - 1] == eos:
            return ids[:t], finish_matched_token(eos)
        text = tokenizer.decode(ids[:t], skip_special_tokens=skip)
        for stop in stops:
            if stop in text:
                return ids[:t], finish_matched_str(stop)
    return ids, finish_length(len(ids))


def expected_text(tokenizer, ids: List[int], reason: dict, skip: bool, no_stop_trim: bool) -> str:
    matched = reason.get("matched")
    if isinstance(matched, int) and not no_stop_trim:
        ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=skip)
    if isinstance(matched, str) and not no_stop_trim:
        text = text[:text.find(matched)]
    return text


Request = Tuple[List[List[int]], dict, dict]  # chunks of ids, finish reason, TokenOut options


def deliver(manager: DetokenizerManager, requests: Dict[str, Request]) -> Dict[str, List[StrOut]]:
    """Interleave requests: one chunk of each per BatchTokenOut, the last chunk finishing."""
    got: Dict[str, List[StrOut]] = {rid: [] for rid in requests}
    for step in range(max(len(chunks) for chunks, _, _ in requests.values())):
        batch = []
        for rid, (chunks, reason, options) in requests.items():
            if step < len(chunks):
                last = step == len(chunks) - 1
                batch.append(token_out(rid, chunks[step], reason if last else None, **options))
        for out in outputs(manager.handle(BatchTokenOut(batch))):
            got[out.rid].append(out)
    return got


def stop_candidates(data, text: str) -> List[str]:
    """Stop strings: pieces of the actual output (so they do occur) and a few random ones."""
    stops = []
    for _ in range(data.draw(st.integers(0, 2))):
        if text:
            start = data.draw(st.integers(0, len(text) - 1))
            stops.append(text[start:start + data.draw(st.integers(1, 4))])
    stops += data.draw(st.lists(st.text(alphabet="ab .日", min_size=1, max_size=3), max_size=2))
    return stops


# ---------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(data=st.data(), sizes=chunk_sizes, skip=st.booleans(), no_stop_trim=st.booleans())
def test_stream_never_leaks_stop_text_and_equals_final_text(tokenizer, data, sizes, skip, no_stop_trim):
    requests: Dict[str, Request] = {}
    expected: Dict[str, str] = {}
    for rid in ("r0", "r1"):
        raw = data.draw(id_lists(tokenizer))
        stops = stop_candidates(data, tokenizer.decode(raw, skip_special_tokens=skip))
        ids, reason = scheduler_finish(tokenizer, raw, stops, skip)
        options = {"skip_special_tokens": skip, "no_stop_trim": no_stop_trim, "stop_strs": stops}
        requests[rid] = (split(ids, sizes) or [[]], reason, options)
        expected[rid] = expected_text(tokenizer, ids, reason, skip, no_stop_trim)
    manager = DetokenizerManager(tokenizer)
    streamed = deliver(manager, requests)
    assert manager.streams == {}  # state is dropped at finish
    for rid, (chunks, reason, options) in requests.items():
        outs = streamed[rid]
        assert [o.finished_reason for o in outs] == [None] * (len(chunks) - 1) + [reason]
        assert "".join(o.text_delta for o in outs) == expected[rid]
        if not no_stop_trim:
            shown_early = "".join(o.text_delta for o in outs[:-1])
            assert not any(stop in shown_early for stop in options["stop_strs"])
        whole = deliver(DetokenizerManager(tokenizer), {rid: ([sum(chunks, [])], reason, options)})[rid]
        assert [o.text_delta for o in whole] == [expected[rid]]


# ---------------------------------------------------------------- examples


def run_one(manager: DetokenizerManager, chunks: List[List[int]], reason: dict, **options: Any) -> str:
    outs = deliver(manager, {"r": (chunks, reason, options)})["r"]
    return "".join(o.text_delta for o in outs)


def test_stop_string_split_across_tokens_is_held_back_then_trimmed(tokenizer):
    ids = tokenizer.encode("Answer: 42 STOP and more")
    chunks = [[i] for i in ids]
    manager = DetokenizerManager(tokenizer)
    outs = deliver(manager, {"r": (chunks, finish_matched_str("STOP"), {"stop_strs": ["STOP"]})})["r"]
    assert "".join(o.text_delta for o in outs) == "Answer: 42 "
    assert all("S" not in o.text_delta for o in outs)


def test_no_stop_trim_keeps_the_stop_string(tokenizer):
    ids = tokenizer.encode("one two STOP")
    text = run_one(DetokenizerManager(tokenizer), [ids], finish_matched_str("STOP"),
                   stop_strs=["STOP"], no_stop_trim=True)
    assert text == "one two STOP"


def test_matched_stop_token_is_not_shown_but_stays_in_ids(tokenizer):
    eos = tokenizer.convert_tokens_to_ids(EOS)
    ids = tokenizer.encode("hello") + [eos]
    manager = DetokenizerManager(tokenizer)
    outs = deliver(manager, {"r": ([ids], finish_matched_token(eos), {"skip_special_tokens": False})})["r"]
    assert outs[0].text_delta == "hello"
    assert outs[0].new_ids == ids
    kept = run_one(manager, [ids], finish_matched_token(eos), skip_special_tokens=False, no_stop_trim=True)
    assert kept == "hello" + EOS


def test_fields_are_carried_through(tokenizer):
    logprobs = LogprobDelta(output_token_logprobs=[-0.5], output_token_ids=[7])
    out = token_out("r", tokenizer.encode("hi"), finish_length(2), logprobs=logprobs, extra_meta={"k": 1})
    (reply,) = DetokenizerManager(tokenizer).handle(BatchTokenOut([out]))
    (got,) = reply.outputs
    assert (got.rid, got.text_delta, got.new_ids, got.finished_reason) == ("r", "hi", out.new_ids, finish_length(2))
    assert (got.prompt_tokens, got.completion_tokens, got.cached_tokens) == (3, 2, 1)
    assert got.logprobs is logprobs and got.extra_meta == {"k": 1}


def test_other_messages_are_forwarded_unchanged(tokenizer):
    manager = DetokenizerManager(tokenizer)
    for msg in (FlushCacheReply(success=True), ServerStateReply(state={"a": 1}), "anything"):
        assert manager.handle(msg) == [msg]
        assert manager.handle(msg)[0] is msg


def test_without_tokenizer_text_is_empty_and_ids_flow():
    manager = DetokenizerManager(None)
    (reply,) = manager.handle(BatchTokenOut([token_out("r", [5, 6], None), token_out("q", [1], finish_length(1))]))
    assert [(o.rid, o.text_delta, o.new_ids) for o in reply.outputs] == [("r", "", [5, 6]), ("q", "", [1])]


class _PoisonTokenizer:
    """Decodes like the real tokenizer but fails on one id."""

    def __init__(self, inner: Any, poison: int) -> None:
        self.inner, self.poison = inner, poison

    def decode(self, ids, **kwargs):
        if self.poison in ids:
            raise ValueError("cannot decode poison id")
        return self.inner.decode(ids, **kwargs)


def test_a_failing_request_is_aborted_and_others_continue(tokenizer):
    poison = 123
    manager = DetokenizerManager(_PoisonTokenizer(tokenizer, poison))
    good = tokenizer.encode("fine text")
    (reply,) = manager.handle(BatchTokenOut([token_out("bad", [poison]), token_out("ok", good)]))
    bad, ok = reply.outputs
    assert bad.finished_reason["type"] == "abort" and bad.finished_reason["status_code"] == 500
    assert "poison" in bad.finished_reason["message"]
    assert ok.finished_reason is None and ok.text_delta == "fine text"
    # Later outputs of the aborted request are dropped until the scheduler finishes it.
    assert manager.handle(BatchTokenOut([token_out("bad", [1])])) == []
    assert manager.handle(BatchTokenOut([token_out("bad", [1], finish_length(3))])) == []
    assert manager.failed == set() and "bad" not in manager.streams
    (reply,) = manager.handle(BatchTokenOut([token_out("ok", [], finish_length(2))]))
    assert reply.outputs[0].finished_reason == finish_length(2) and manager.streams == {}


# ---------------------------------------------------------------- process and loop


def test_loop_exits_when_parent_is_gone(tmp_path):
    loop = DetokenizerLoop(DetokenizerManager(None), PortArgs.new(str(tmp_path)), parent_pid=-1)
    loop.run()  # returns at once: our parent is not pid -1
    assert loop.recv.closed and loop.send.closed


def test_startup_failure_is_reported_through_the_pipe(tmp_path, monkeypatch):
    monkeypatch.setattr(dm, "configure_logging", lambda *a, **k: None)  # keep pytest's logging
    args = ServerArgs(model_path=str(tmp_path / "missing"), device="cpu")
    reader, writer = multiprocessing.Pipe(duplex=False)
    run_detokenizer_process(args, PortArgs.new(str(tmp_path)), writer)
    message = reader.recv()
    assert message.startswith("detokenizer failed to start") and "missing" in message


def recv_within(sock: zmq.Socket, seconds: float) -> Any:
    assert sock.poll(int(seconds * 1000)), f"no message from the detokenizer within {seconds} s"
    return sock.recv_pyobj()


def test_subprocess_detokenizes_over_zmq(tokenizer, tokenizer_dir, tmp_path):
    args = ServerArgs(model_path=tokenizer_dir, device="cpu", log_level="warning")
    ports = PortArgs.new(str(tmp_path))
    ctx = zmq.Context(1)
    from_detok = ctx.socket(zmq.PULL)
    from_detok.bind(ports.tokenizer_ipc)
    to_detok = ctx.socket(zmq.PUSH)
    spawn = multiprocessing.get_context("spawn")
    reader, writer = spawn.Pipe(duplex=False)
    proc = spawn.Process(target=run_detokenizer_process, args=(args, ports, writer), daemon=True)
    proc.start()
    try:
        assert reader.poll(60) and reader.recv() == "ready"
        to_detok.connect(ports.detokenizer_ipc)
        ids = tokenizer.encode("café 日本語")
        to_detok.send_pyobj(BatchTokenOut([token_out("r", ids[:3])]))
        to_detok.send_pyobj(BatchTokenOut([token_out("r", ids[3:], finish_length(len(ids)))]))
        to_detok.send_pyobj(FlushCacheReply(success=True))
        replies = [recv_within(from_detok, 30.0) for _ in range(3)]
        assert "".join(o.text_delta for r in replies[:2] for o in r.outputs) == "café 日本語"
        assert replies[2] == FlushCacheReply(success=True)
    finally:
        proc.terminate()
        proc.join(10)
        from_detok.close(linger=0)
        to_detok.close(linger=0)
        ctx.term()
    assert not proc.is_alive()
