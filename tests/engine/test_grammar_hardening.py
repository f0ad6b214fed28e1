"""Hostile grammars and bounded jump-forward through the scheduler (issue 15 items 1, 8, 29).

Each request's messages are read straight from the scheduler so that `extra_meta`
(jump_forward_tokens) and the streamed token deltas can be checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

BACKENDS = ["xgrammar", "fsm"]


@dataclass
class Outcome:
    streamed_ids: List[int] = field(default_factory=list)
    finished_reason: Optional[dict] = None
    meta: dict = field(default_factory=dict)
    final_ids: List[int] = field(default_factory=list)


def _run(h: SchedulerHarness, requests: Dict[str, dict], stream: bool = False) -> Dict[str, Outcome]:
    """Submit {rid: params}, run to idle; the final output ids come from the Req objects."""
    for rid, params in requests.items():
        h.submit(rid, text="hi", params=params, stream=stream)
    reqs = {r.rid: r for r in h.scheduler.grammar.pending + h.scheduler.waiting}
    outcomes = {rid: Outcome() for rid in requests}
    while h.scheduler.has_work() or h.scheduler.outbox:
        for msg in h.scheduler.step():
            for out in msg.outputs:
                got = outcomes[out.rid]
                got.streamed_ids.extend(out.new_ids)
                got.finished_reason = out.finished_reason
                got.meta = dict(out.extra_meta or {})
    for rid, got in outcomes.items():
        got.final_ids = list(reqs[rid].output_ids) if rid in reqs else got.streamed_ids
    return outcomes


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_text_never_exceeds_max_new_tokens_or_context(backend):
    """`a{3000}` with max_new_tokens 2000 on a 1024-token context: the output stops at the
    context, and jump_forward_tokens counts only tokens that were emitted."""
    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend, context_length=1024)
    prompt_len = len(h.tokenizer.encode("hi"))
    outs = _run(h, {"ctx": {"regex": "a{3000}", "max_new_tokens": 2000},
                    "len": {"regex": "a{3000}", "max_new_tokens": 300}})
    for rid, limit in (("ctx", 1024 - prompt_len), ("len", 300)):
        got = outs[rid]
        assert got.finished_reason["type"] == "length", got.finished_reason
        assert len(got.streamed_ids) == len(got.final_ids) == limit
        assert h.tokenizer.decode(got.final_ids) == "a" * limit  # one 'a' per token in this vocab
        jumped = got.meta.get("jump_forward_tokens", 0)
        assert 0 < jumped < limit, got.meta  # the first token was sampled
    assert h.scheduler.state()["jump_forward_tokens"] == sum(o.meta["jump_forward_tokens"] for o in outs.values())
    assert h.scheduler.check_memory_idle() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_forced_text_is_jumped_a_chunk_at_a_time(backend):
    from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS

    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend, context_length=4096)
    got = _run(h, {"r": {"regex": "a{3000}b", "max_new_tokens": 4000}})["r"]
    assert h.tokenizer.decode(got.final_ids, skip_special_tokens=True) == "a" * 3000 + "b"
    events = h.scheduler.state()["jump_forward_events"]
    assert events >= 3000 // JUMP_CHUNK_CHARS, events  # never the whole forced string at once


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_grammars_fail_alone_with_400(backend):
    """Huge repetitions and empty languages get a 400 naming the problem; a normal request in
    the same scheduler is unaffected and no KV leaks."""
    hostile = {
        "huge-regex": ({"regex": "a{99999999}"}, r"MAX_(FORCED_CHARS|FSM_REGEX_POSITIONS)"),
        "huge-items": ({"json_schema": json.dumps({"type": "array", "items": {"const": 1}, "minItems": 10_000_000})},
                       r"minItems = 10000000.*MAX_FORCED_CHARS"),
        "empty": ({"regex": r"[^\s\S]"}, "matches no string"),
        "empty-after-a": ({"regex": r"a[^\s\S]"}, "matches no string"),
    }
    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend)
    requests = {rid: {**params, "max_new_tokens": 4} for rid, (params, _) in hostile.items()}
    requests["good"] = {"regex": "[0-9]{3}", "max_new_tokens": 8}
    outs = _run(h, requests)
    for rid, (_, pattern) in hostile.items():
        reason = outs[rid].finished_reason
        assert reason["type"] == "abort" and reason["status_code"] == 400, (rid, reason)
        assert re.search(pattern, reason["message"]), (rid, reason["message"])
    assert re.fullmatch("[0-9]{3}", h.tokenizer.decode(outs["good"].final_ids, skip_special_tokens=True))
    assert h.scheduler.check_memory_idle() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_grammar_compile_timeout_fails_the_request_with_400(backend, monkeypatch):
    import threading

    from sglang.runtime.managers import grammar_support

    monkeypatch.setattr(grammar_support, "GRAMMAR_COMPILE_TIMEOUT_S", 0.2)
    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend)
    release = threading.Event()
    manager = h.scheduler.grammar._get_manager()
    real_compile = manager.backend.compile
    monkeypatch.setattr(manager.backend, "compile", lambda kind, spec: (release.wait(5), real_compile(kind, spec))[1])
    try:
        reason = _run(h, {"slow": {"regex": "[0-9]{3}", "max_new_tokens": 4}})["slow"].finished_reason
    finally:
        release.set()
    assert reason["type"] == "abort" and reason["status_code"] == 400, reason
    assert "GRAMMAR_COMPILE_TIMEOUT_S" in reason["message"]


# Free-text runs of several sampled (hence streamed) tokens, each followed by forced text: a jump
# that wrongly re-tokenized its context would rewrite tokens the client already has.
_STREAM_PATTERN = r'The [a-z]{4,8} said: "[a-z]{4,8}" and then it left the garden quietly\. [a-z]{3,6} (Yes|No)!'



@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_tokens_equal_the_final_output_when_a_lone_request_jumps(backend):
    """A lone streaming request (no batch to suppress jumps) streams every token as soon as it
    is sampled; jump-forward must never re-tokenize those, or the client's text diverges from
    the request's final text."""
    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend)
    jumped = 0
    for seed in range(6):
        params = {"regex": _STREAM_PATTERN, "max_new_tokens": 96, "temperature": 1.0, "seed": seed}
        got = _run(h, {f"s{seed}": params}, stream=True)[f"s{seed}"]
        text = h.tokenizer.decode(got.streamed_ids, skip_special_tokens=True)
        assert got.streamed_ids == got.final_ids, (text, h.tokenizer.decode(got.final_ids, skip_special_tokens=True))
        assert re.fullmatch(_STREAM_PATTERN, text), text
        jumped += got.meta.get("jump_forward_tokens", 0)
    assert jumped > 0  # the scenario under test happened
