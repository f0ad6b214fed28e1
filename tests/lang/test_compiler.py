"""The compiler on a scripted backend: tracing every node type, fallbacks, graph output, and each
pass (with its flag and statistic). Model-backed equivalence lives in test_compiler_runtime.py."""

from __future__ import annotations

import pytest

import sglang as sgl
from sglang.compiler.batch_plan import plan_batch
from sglang.compiler.graph import Fork, Join, SetVar, Submit
from sglang.compiler.passes.jump_forward import split_literal_prefix
from sglang.compiler.tracer import TraceError
from sglang.lang.backend.base_backend import Prompt
from sglang.lang.ir import SglSpecGen
from sglang.testing.scripted_backend import ScriptedBackend


class ApiLikeBackend(ScriptedBackend):
    """An OpenAI-style backend: no prefix cache, counts calls."""
    capabilities = frozenset({"stream"})


@sgl.function
def every_node(s, topic, pic):
    s += sgl.system("sys")
    with s.user():
        s += "About " + topic + sgl.image(pic)
    s += sgl.assistant(sgl.gen("g", max_tokens=4) + sgl.select("c", choices=["a", "b"]))
    with s.var_scope("scope"):
        s += "scoped"
    forks = s.fork(2)
    forks += lambda i: f"branch {i}" + sgl.gen("fg")
    forks.join()
    s += "Then " + forks[1]["fg"]
    s["extra"] = "v"


def kinds(program, **bound) -> list[str]:
    from sglang.compiler.graph import format_graph
    graph = program.trace(**bound)
    return [line.split()[2] for line in format_graph(graph).splitlines()]


def test_trace_has_every_node_kind(tmp_path) -> None:
    graph = every_node.trace()
    found = set(kinds(every_node))
    assert {"role_begin", "role_end", "text", "argument", "image", "gen", "select",
            "var_scope_begin", "var_scope_end", "fork", "get_fork_item", "join", "variable",
            "set_var"} <= found
    assert graph.arg_names == ["topic", "pic"]
    assert sum(isinstance(op, Fork) for op in graph.ops) == 1
    assert any(isinstance(op, Join) for op in graph.ops)
    assert any(isinstance(op, SetVar) for op in graph.ops)


def test_variable_node_has_data_edge() -> None:
    nodes = every_node.trace().nodes()
    var = next(n for n in nodes if n.kind == "variable")
    producer = nodes[var.deps[0]]
    assert producer.kind == "gen" and producer.stream == 2


def test_print_graph_and_dot(capsys) -> None:
    compiled = every_node.compile(backend=ScriptedBackend())
    compiled.print_graph()
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(every_node.trace().nodes()) + 1  # + the cache hint
    assert "cache_hint" in out and "fork" in out
    dot = compiled.to_dot()
    assert dot.startswith('digraph "every_node"') and "style=dashed" in dot


@pytest.mark.parametrize("body, reason", [
    (lambda s, q: s.__iadd__(f"Q: {q}"), "argument 'q'"),
    (lambda s, q: [s.__iadd__(x) for x in q], "argument 'q'"),
    (lambda s, q: s.__iadd__(sgl.gen("x")) if s["x"] == "y" else None, "generated value 'x'"),
    (lambda s, q: s.text(), "s.text()"),
])
def test_untraceable_programs_fall_back(body, reason, caplog) -> None:
    program = sgl.function(body)
    with pytest.raises(TraceError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        program.trace()
    compiled = program.compile(backend=ScriptedBackend())
    assert not compiled.is_compiled and reason in compiled.fallback_reason
    assert "runs interpreted" in caplog.text


def test_fallback_still_runs() -> None:
    @sgl.function
    def branchy(s):
        s += "x" + sgl.gen("a")
        if s["a"].startswith("<"):
            s += "yes"

    compiled = branchy.compile(backend=ScriptedBackend())
    assert compiled.run().text() == "x<1>yes"


def test_bound_arguments_make_loops_traceable() -> None:
    @sgl.function
    def few_shot(s, examples, q):
        for ex in examples:
            s += ex + "\n"
        s += q + sgl.gen("a")

    compiled = few_shot.compile(backend=ScriptedBackend(), examples=["e1", "e2"])
    assert compiled.is_compiled
    assert compiled.run(q="Q").text() == "e1\ne2\nQ<7>"


def test_compiled_equals_interpreted_on_scripted_backend() -> None:
    be = ScriptedBackend()
    compiled = every_node.compile(backend=be, passes={"jump_forward": False})
    pic = b"\x89PNGfake"
    a = compiled.run(topic="t", pic=pic)
    b = every_node.run(topic="t", pic=pic, backend=be)
    assert a.text() == b.text() and a["fg"] == b["fg"] and a["extra"] == "v"


def test_pass_flags_validate() -> None:
    with pytest.raises(ValueError, match="unknown compiler pass"):
        every_node.compile(backend=ScriptedBackend(), passes={"nope": True})
    compiled = every_node.compile(backend=ScriptedBackend(), passes=["jump_forward"])
    compiled.run(topic="t", pic=b"\x89PNG").sync()
    assert set(compiled.stats) == {"jump_forward"}


def test_prefix_sharing_hint_includes_children_constant() -> None:
    be = ScriptedBackend()

    @sgl.function
    def prog(s):
        s += "Root. "
        forks = s.fork(3)
        forks += lambda i: f"Shared child intro, variant {i}" + sgl.gen("x")
        forks.join()

    compiled = prog.compile(backend=be)
    compiled.run().sync()
    assert be.calls_of("cache_prefix") == ["Root. Shared child intro, variant"]
    assert compiled.stats["prefix_sharing"]["fork_groups_hinted"] == 1
    off = ScriptedBackend()
    prog.compile(backend=off, passes={"prefix_sharing": False}).run().sync()
    assert off.calls_of("cache_prefix") == ["Root. "]  # the interpreter's own fork hint


def test_batch_plan_orders_and_hints() -> None:
    @sgl.function
    def prog(s, shots, q):
        s += "Instruction shared by every submission. " + shots + q + sgl.gen("a")

    graph = prog.trace()
    a, b = "Shots set A: " + "a" * 40, "Shots set B: " + "b" * 40
    args = [{"shots": [a, b][i % 2], "q": f"q{i}"} for i in range(6)]
    order, hints = plan_batch(graph, ScriptedBackend(), args)
    assert [args[i]["shots"] for i in order] == [a] * 3 + [b] * 3
    assert hints[0] == "Instruction shared by every submission. Shots set "
    assert any(h.endswith("a" * 40 + "q") for h in hints) and len(hints) == 3


def test_run_batch_compiled_keeps_input_order() -> None:
    be = ScriptedBackend()

    @sgl.function
    def prog(s, x):
        s += "Common instruction text here: " + x + sgl.gen("a")

    states = prog.compile(backend=be).run_batch([{"x": "z" * (5 - i)} for i in range(5)])
    assert [st["a"] for st in states] == [f"<{30 + 5 - i}>" for i in range(5)]
    assert be.calls_of("cache_prefix")[0] == "Common instruction text here: z"


def test_code_motion_is_opt_in() -> None:
    @sgl.function
    def prog(s, doc):
        s += sgl.order_independent("Document: " + doc + "\n", "Rules: be brief.\n")
        s += sgl.gen("a")

    be = ScriptedBackend()
    default = prog.compile(backend=be)
    assert default.run(doc="D").text().startswith("Document: D")
    moved = prog.compile(backend=be, passes={"code_motion": True})
    assert moved.run(doc="D").text().startswith("Rules: be brief.\nDocument: D")
    assert moved.stats["code_motion"] == {"groups_reordered": 1, "hoisted_chars": 17}


@pytest.mark.parametrize("regex, literal, rest", [
    (r'\{"name": "[a-z]+"\}', '{"name": "', r'[a-z]+"\}'),
    ("ab*", "a", "b*"), ("a|b", "", "a|b"), ("abc", "abc", ""), (r"\d+", "", r"\d+"),
    (r"(ab)c", "", "(ab)c"), (r"Yes\.", "Yes.", ""),
])
def test_split_literal_prefix(regex, literal, rest) -> None:
    assert split_literal_prefix(regex) == (literal, rest)


def test_jump_forward_split_keeps_variable_and_precompiles() -> None:
    be = ScriptedBackend()
    precompiled = []
    be.precompile_constraint = lambda **kw: precompiled.append(kw) or True

    @sgl.function
    def prog(s):
        s += "J:" + sgl.gen("j", regex=r'\{"n": [0-9]\}')

    compiled = prog.compile(backend=be)
    state = compiled.run()
    assert state["j"].startswith('{"n": ')
    prompt, params = be.calls_of("generate")[0]
    assert prompt.text == 'J:{"n": ' and params.regex == r"[0-9]\}"
    assert compiled.stats["jump_forward"] == {"gens_split": 1, "constant_chars": 6,
                                              "constraints_precompiled": 1}
    assert precompiled == [{"regex": r"[0-9]\}"}]


@sgl.function(num_api_spec_tokens=64)
def extract(s, who):
    s += "Profile of " + who + ".\nName:" + sgl.gen("name", stop="\n")
    s += "\nAge:" + sgl.gen("age", stop="\n") + "\nJob:" + sgl.gen("job", stop="\n")


def test_api_speculative_merges_and_matches() -> None:
    be = ApiLikeBackend(reply=lambda p, _: " Ann\nAge: 30\nJob: pilot\nmore")
    compiled = extract.compile(backend=be)
    state = compiled.run(who="Ann")
    assert (state["name"], state["age"], state["job"]) == (" Ann", " 30", " pilot")
    assert len(be.calls_of("generate")) == 1
    assert compiled.stats["api_speculative"] == {"spec_groups": 1, "gens_merged": 3}
    ops = compiled.optimized_graph().ops
    assert any(isinstance(leaf, SglSpecGen) for op in ops if isinstance(op, Submit)
               for leaf in getattr(op.expr, "exprs", [op.expr]))


def test_api_speculative_falls_back_when_template_breaks() -> None:
    replies = iter([" Ann\nWeight: 9\n", " 30", " pilot"])
    be = ApiLikeBackend(reply=lambda p, _: next(replies))
    state = extract.compile(backend=be).run(who="Ann")
    assert (state["name"], state["age"], state["job"]) == (" Ann", " 30", " pilot")
    assert len(be.calls_of("generate")) == 3  # 1 speculative + 2 fallbacks
    assert state.text().endswith("Name: Ann\nAge: 30\nJob: pilot")


def test_api_speculative_skipped_on_runtime_backends() -> None:
    be = ScriptedBackend()  # has a prefix cache
    compiled = extract.compile(backend=be)
    compiled.run(who="x").sync()
    assert compiled.stats["api_speculative"] == {"spec_groups": 0, "gens_merged": 0}


def test_compiled_stream_and_errors() -> None:
    be = ScriptedBackend(fail_on="boom")

    @sgl.function
    def prog(s, x):
        s += x + sgl.gen("a")

    compiled = prog.compile(backend=be)
    states = compiled.run_batch([{"x": "ok"}, {"x": "boom"}, {"x": "fine"}])
    assert states[0].error() is None and states[2].error() is None
    assert "scripted failure" in str(states[1].error())
    with pytest.raises(TypeError, match="missing argument"):
        compiled.run()
    streamed = compiled.run(x="hi", stream=True)
    assert "".join(streamed.text_iter()) == streamed.text()


def test_cache_hint_prompt_is_sent_as_text() -> None:
    be = ScriptedBackend()
    be.cache_prefix(Prompt("abc"))
    assert be.calls_of("cache_prefix") == ["abc"]
