"""Programs and backend calls written for upstream SGLang run unchanged: item assignment on a
fork, `cache_prefix` with a plain string, the messages a program records, and forks on chat
backends that keep the parent's conversation."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

import sglang as sgl
from sglang.lang.backend.base_backend import Prompt
from sglang.lang.backend.openai_backend import OpenAI
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
from sglang.lang.backend.runtime_protocol import common_prefix_len
from sglang.lang.ir import SglSamplingParams


@pytest.fixture(scope="module")
def openai_chat(runtime) -> Iterator[OpenAI]:
    backend = OpenAI("default", base_url=runtime.url + "/v1", is_chat_model=True, max_retries=0)
    yield backend
    backend.shutdown()


def _run(program, backend, **kwargs) -> Any:
    state = program.run(backend=backend, temperature=0, **kwargs)
    assert state.error() is None, state.error()
    return state


# ----------------------------------------------------------------------------- forks[i] += ...
@sgl.function
def per_branch(s):
    s += "Two branches follow.\n"
    forks = s.fork(2)
    forks[0] += "Left:" + sgl.gen("x", max_tokens=3, stop="\n")
    forks[1] += "Right:" + sgl.gen("x", max_tokens=3, stop="\n")
    forks.join()
    return [f.text() for f in forks]


def test_fork_item_iadd_runs_each_branch(engine_backend) -> None:
    state = _run(per_branch, engine_backend)
    left, right = state.ret_value
    values = state["x"]
    assert isinstance(values, list) and len(values) == 2
    assert left == "Two branches follow.\nLeft:" + values[0]
    assert right == "Two branches follow.\nRight:" + values[1]


def test_fork_item_cannot_be_replaced_by_another_state(engine_backend) -> None:
    @sgl.function
    def swap(s):
        forks = s.fork(2)
        forks[0] = forks[1]

    with pytest.raises(TypeError, match=r"forks\[i\] \+="):
        swap.run(backend=engine_backend)


# ----------------------------------------------------------------------------- cache_prefix(str)
PREFIX = "A prefix that a backend caches ahead of the requests that continue it, " * 2


@pytest.mark.parametrize("which", ["endpoint", "engine"])
def test_cache_prefix_accepts_a_plain_string(runtime, engine_backend, which: str) -> None:
    backend = RuntimeEndpoint(runtime.url) if which == "endpoint" else engine_backend
    try:
        backend.flush_cache()
        backend.cache_prefix(PREFIX)
        prefix_ids, full_ids = backend.transport.tokenize([PREFIX, PREFIX + "and then"])
        result = backend.generate(Prompt(PREFIX + "and then"), SglSamplingParams(max_new_tokens=1))
        assert result.meta_info["cached_tokens"] == common_prefix_len(prefix_ids, full_ids) > 10
        with pytest.raises(TypeError, match="prefix text"):
            backend.cache_prefix(["not", "text"])
    finally:
        if which == "endpoint":
            backend.shutdown()


# ----------------------------------------------------------------------------- messages()
@sgl.function
def spaced_turns(s):
    s += sgl.system("  Be brief.")
    s += sgl.user("\n Hello there ")
    s += sgl.assistant(" \n  Hi.  ")


@pytest.mark.parametrize("name", ["engine", "runtime"])
def test_messages_strip_leading_whitespace(runtime, engine_backend, name: str) -> None:
    state = _run(spaced_turns, engine_backend if name == "engine" else runtime)
    assert state.messages() == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hello there "},
                                {"role": "assistant", "content": "Hi.  "}]
    assert " \n  Hi.  " in state.text()  # the prompt text keeps what the program wrote


def test_generated_assistant_message_is_left_stripped(engine_backend) -> None:
    @sgl.function
    def reply(s):
        s += sgl.user("Say something.")
        with s.assistant():
            s += "   " + sgl.gen("a", max_tokens=4)

    state = _run(reply, engine_backend)
    assert state.messages()[-1] == {"role": "assistant", "content": ("   " + state["a"]).lstrip()}


# ----------------------------------------------------------------------------- fork on chat backends
@sgl.function
def forked_chat(s):
    s += sgl.system("You are terse.")
    s += sgl.user("Name a colour.")
    parent = s.messages()
    forks = s.fork(2)
    forks += sgl.assistant(sgl.gen("answer", max_tokens=4))
    forks += lambda i: sgl.user(f"Follow-up {i}?")
    forks.join()
    return parent, [f.messages() for f in forks]


@sgl.function
def unforked_chat(s):
    s += sgl.system("You are terse.")
    s += sgl.user("Name a colour.")
    s += sgl.assistant(sgl.gen("answer", max_tokens=4))


@pytest.mark.parametrize("name", ["openai_chat", "engine"])
def test_fork_children_inherit_chat_messages(engine_backend, openai_chat, name: str) -> None:
    backend = openai_chat if name == "openai_chat" else engine_backend
    state = _run(forked_chat, backend)
    parent, children = state.ret_value
    assert parent == [{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": "Name a colour."}]
    alone = _run(unforked_chat, backend)["answer"]  # greedy: what the full conversation gives
    for i, (messages, answer) in enumerate(zip(children, state["answer"])):
        assert messages[:2] == parent
        assert messages[2:] == [{"role": "assistant", "content": answer.lstrip()},
                                {"role": "user", "content": f"Follow-up {i}?"}]
        assert answer == alone  # the request carried the parent's turns
    assert state.messages() == parent  # children's turns stay in the children
