"""Interpreter semantics on a scripted backend (no model): ordering, variables, roles, forks,
errors, batches, streaming and asyncio."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import sglang as sgl
from sglang.lang.interpreter.prefix_probe import probe_prefix
from sglang.lang.ir import REGEX_INT
from sglang.testing.scripted_backend import ScriptedBackend


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


def test_gen_appends_and_stores(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s, q):
        s += "Q: " + q + "\nA:"
        s += sgl.gen("a", max_tokens=8, stop="\n")

    state = prog.run(q="hi", backend=backend)
    assert state["a"] == "<8>"
    assert state.text() == "Q: hi\nA:<8>"
    prompt, params = backend.calls_of("generate")[0]
    assert prompt.text == "Q: hi\nA:"
    assert params.max_new_tokens == 8 and params.stop == "\n"
    assert params.temperature == 1.0  # run() default filled in


def test_run_defaults_and_gen_override(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += sgl.gen("a") + sgl.gen("b", temperature=0.5)

    prog.run(backend=backend, temperature=0.0, max_new_tokens=3).sync()
    (_, p1), (_, p2) = backend.calls_of("generate")
    assert (p1.temperature, p1.max_new_tokens) == (0.0, 3)
    assert (p2.temperature, p2.max_new_tokens) == (0.5, 3)


def test_unknown_run_argument_is_rejected(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += "x"

    with pytest.raises(TypeError, match="temprature"):
        prog.run(backend=backend, temprature=0.1)


def test_dtype_and_select(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += sgl.gen_int("n") + " " + sgl.select("c", choices=["a", "bbb", "cc"])
        s += sgl.gen("d", choices=["x", "yy"])

    state = prog.run(backend=backend)
    assert state["c"] == "bbb" and state["d"] == "yy"
    assert backend.calls_of("generate")[0][1].regex == REGEX_INT
    meta = state.get_meta_info("c")
    assert "normalized_prompt_logprobs" in meta


def test_choice_methods_exported() -> None:
    assert sgl.token_length_normalized is not None
    assert sgl.greedy_token_selection is not None
    assert sgl.unconditional_likelihood_normalized is not None


def test_roles_messages_and_chat_template(backend: ScriptedBackend) -> None:
    @sgl.function
    def chat(s):
        s += sgl.system("Be brief.")
        s += sgl.user("Hello")
        s += sgl.assistant(sgl.gen("reply"))
        with s.user():
            s += "Again"
        s += sgl.assistant_begin() + sgl.gen("r2") + sgl.assistant_end()

    state = chat.run(backend=backend)
    msgs = state.messages()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == "Hello" and msgs[2]["content"] == state["reply"]
    assert "<|im_start|>user\nHello<|im_end|>\n" in state.text()
    # Inside a role the template's stop string is added.
    assert "<|im_end|>" in backend.calls_of("generate")[0][1].stop


def test_nested_roles_fail_cleanly(backend: ScriptedBackend) -> None:
    @sgl.function
    def bad(s):
        s += sgl.user_begin() + sgl.assistant_begin() + sgl.gen("x")

    state = bad.run(backend=backend)
    assert isinstance(state.error(), ValueError)
    with pytest.raises(sgl.ProgramError, match="nest"):
        state["x"]


def test_images_become_message_parts(backend: ScriptedBackend, tmp_path) -> None:
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")

    @sgl.function
    def prog(s):
        s += sgl.user(sgl.image(str(png)) + "What is this?" + sgl.image(b"\xff\xd8\xffjpg"))

    state = prog.run(backend=backend)
    parts = state.messages()[0]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["image_url", "text", "image_url"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert len(state.executor.images_) == 2


def test_missing_image_file_is_an_error(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += sgl.image("/no/such.png") + sgl.gen("x")

    state = prog.run(backend=backend)
    assert isinstance(state.error(), FileNotFoundError)


def test_fork_join_gather_in_child_order(backend: ScriptedBackend) -> None:
    @sgl.function
    def tips(s):
        s += "Tips:\n"
        forks = s.fork(3)
        forks += lambda i: f"Tip {i}:" + sgl.gen("tip", max_tokens=4)
        forks.join()
        s += "Summary" + sgl.gen("summary")

    state = tips.run(backend=backend)
    tips_ = state["tip"]
    assert tips_ == [f"<{len('Tips:') + 1 + len('Tip 0:')}>"] * 3
    assert backend.calls_of("cache_prefix") == ["Tips:\n"]
    assert state["summary"]


def test_fork_broadcast_list_and_expression(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        forks = s.fork(2)
        forks += ["a", "bb"]
        forks += sgl.gen("x")
        forks.join()

    assert prog.run(backend=backend)["x"] == ["<1>", "<2>"]

    @sgl.function
    def bad(s):
        forks = s.fork(2)
        forks += ["only one"]

    with pytest.raises(ValueError, match="needs 2 items"):
        bad.run(backend=backend)


def test_fork_children_read_by_index(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += "P"
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += str(i) * (i + 1) + sgl.gen("t")
        s += "A" + forks[0]["t"] + "B" + forks[1]["t"]

    assert prog.run(backend=backend).text() == "PA<2>B<3>"


def test_concate_and_append(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += "root "
        forks = s.fork(2)
        forks += lambda i: f"c{i} "
        forks.join("concate_and_append")
        s += sgl.gen("after")

    state = prog.run(backend=backend)
    assert state.text().startswith("root c0 c1 ")
    assert backend.calls_of("concatenate_and_append") == [("root ", ["root c0 ", "root c1 "])]


def test_copy_and_var_scope(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += "abc"
        with s.var_scope("scoped"):
            s += "12" + sgl.gen("g")
        c = s.copy()
        c += "!"
        s["c_text"] = c.text()

    state = prog.run(backend=backend)
    assert state["scoped"] == "12<5>"
    assert state["c_text"] == "abc12<5>!"


def test_nested_function_call(backend: ScriptedBackend) -> None:
    @sgl.function
    def inner(s, x):
        s += f"[{x}]" + sgl.gen("inner")

    @sgl.function
    def outer(s):
        s += "o"
        inner(s, "y")
        s += sgl.gen("outer")

    state = outer.run(backend=backend)
    assert state.text() == "o[y]<4>" + "<7>"
    with pytest.raises(TypeError, match="run"):
        inner("x")


def test_bind(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s, a, b):
        s += a + b

    assert prog.bind(a="1").run(b="2", backend=backend).text() == "12"
    with pytest.raises(TypeError, match="zzz"):
        prog.bind(zzz=1)


def test_backend_error_surfaces_without_deadlock() -> None:
    backend = ScriptedBackend(fail_on="boom")

    @sgl.function
    def prog(s):
        s += "boom" + sgl.gen("x") + sgl.gen("y")

    state = prog.run(backend=backend)
    with pytest.raises(sgl.ProgramError, match="scripted failure"):
        state["y"]
    assert "scripted failure" in str(state.error())
    assert len(backend.calls_of("generate")) == 1  # later expressions skipped


def test_missing_variable_raises_keyerror(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s):
        s += sgl.gen("x")

    state = prog.run(backend=backend)
    with pytest.raises(KeyError, match="nope"):
        state["nope"]


def test_run_batch_order_errors_and_prefix(backend: ScriptedBackend) -> None:
    slow = ScriptedBackend(delay_s=0.01, fail_on="q3")

    @sgl.function
    def prog(s, q):
        s += "A long shared instruction prefix. Question: " + q
        s += sgl.gen("a")
        if q == "q5":
            raise ValueError("body failed")

    states = prog.run_batch([{"q": f"q{i}"} for i in range(8)], backend=slow, num_threads=4,
                            progress_bar=True)
    assert len(states) == 8
    for i, st in enumerate(states):
        if i == 3:
            assert "scripted failure" in str(st.error())
        elif i == 5:
            assert isinstance(st.error(), ValueError)
        else:
            assert st.error() is None and st.text().endswith(f"q{i}<46>")
    assert slow.calls_of("cache_prefix") == ["A long shared instruction prefix. Question: q"]


def test_run_batch_generator_style(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s, x):
        s += x + sgl.gen("a")

    gen = prog.run_batch([{"x": "a" * i} for i in range(5)], backend=backend, generator_style=True)
    assert [st["a"] for st in gen] == [f"<{i}>" for i in range(5)]


def test_streaming_chunks_concatenate(backend: ScriptedBackend) -> None:
    backend.reply = lambda p, _: "streamed text here"

    @sgl.function
    def prog(s):
        s += "Hi " + sgl.gen("a") + " and " + sgl.gen("b")

    state = prog.run(stream=True, backend=backend)
    pieces = list(state.text_iter())
    assert len(pieces) > 3 and "".join(pieces) == state.text()
    state2 = prog.run(stream=True, backend=backend)
    assert "".join(state2.text_iter("b")) == state2["b"] == "streamed text here"


def test_async_run_and_stream(backend: ScriptedBackend) -> None:
    @sgl.function
    def prog(s, x):
        s += x + sgl.gen("a")

    async def main():
        st = await prog.run_async("xy", backend=backend)
        many = await prog.run_batch_async([{"x": "a" * i} for i in range(6)], backend=backend)
        streamed = prog.run(x="hello", stream=True, backend=backend)
        chunks = [c async for c in streamed.text_async_iter("a")]
        return st, many, chunks, streamed

    st, many, chunks, streamed = asyncio.run(main())
    assert st["a"] == "<2>"
    assert [m["a"] for m in many] == [f"<{i}>" for i in range(6)]
    assert "".join(chunks) == streamed["a"]


def test_body_runs_ahead_of_backend() -> None:
    backend = ScriptedBackend(delay_s=0.2)

    @sgl.function
    def prog(s):
        s += sgl.gen("a") + sgl.gen("b")

    t0 = time.perf_counter()
    state = prog.run(backend=backend)
    assert time.perf_counter() - t0 < 0.15  # returned before any generation finished
    assert state["b"]


def test_worker_threads_end() -> None:
    backend = ScriptedBackend()

    @sgl.function
    def prog(s):
        forks = s.fork(4)
        forks += sgl.gen("x")
        s += "done"

    before = threading.active_count()
    for _ in range(5):
        prog.run(backend=backend).sync()
    time.sleep(0.2)
    assert threading.active_count() <= before + 1


def test_prefix_probe_stops_at_first_primitive(backend: ScriptedBackend) -> None:
    def body(s, q):
        s += sgl.system("sys")
        s += "Fixed " + q + sgl.gen("x") + "never"

    assert probe_prefix(body, backend, ("Q",), {}).endswith("Fixed Q")


def test_chat_model_gen_must_open_assistant_block() -> None:
    backend = ScriptedBackend(is_chat_model=True)

    @sgl.function
    def bad(s):
        s += sgl.user("hi") + "loose text" + sgl.gen("x")

    assert "assistant block" in str(bad.run(backend=backend).error())


def test_no_default_backend_message() -> None:
    @sgl.function
    def prog(s):
        s += "x"

    sgl.global_config.default_backend = None
    with pytest.raises(RuntimeError, match="set_default_backend"):
        prog.run()


def test_video_frames_become_images(backend: ScriptedBackend, tmp_path) -> None:
    from PIL import Image

    frames = [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(6)]
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)

    @sgl.function
    def prog(s):
        s += sgl.user(sgl.video(str(gif), num_frames=3) + "What happens?")

    state = prog.run(backend=backend)
    parts = state.messages()[0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    assert len(state.executor.images_) == 3
    with pytest.raises(ValueError, match="num_frames"):
        from sglang.lang.image_io import load_video_frames
        load_video_frames(str(gif), 0)
