"""Compiled vs interpreted on our runtime (the shared sgl.Runtime): identical greedy results for
a dozen programs, and the prefill savings of the prefix-sharing pass."""

from __future__ import annotations

import re

import pytest

import sglang as sgl

INTRO = ("You are a careful assistant that answers questions about cooking, gardening and "
         "travel. Read the question, think about it and answer in one short line. ")


@sgl.function
def p_select(s, review):
    s += "Review: great food. Sentiment: positive\nReview: cold and slow. Sentiment: negative\n"
    s += "Review: " + review + " Sentiment:" + sgl.select("label", choices=[" positive", " negative"])


@sgl.function
def p_fork(s, topic):
    s += INTRO + "Topic: " + topic + "\n"
    forks = s.fork(3)
    forks += lambda i: f"Idea {i}:" + sgl.gen("idea", max_tokens=4, stop="\n")
    forks.join()
    s += "Best idea:" + sgl.gen("best", max_tokens=4)


@sgl.function
def p_inner(s, x):
    s += "[" + x + "]" + sgl.gen("inner", max_tokens=3)


@sgl.function
def p_nested_call(s, x):
    s += INTRO
    p_inner(s, x)
    s += " then" + sgl.gen("outer", max_tokens=3)


@sgl.function
def p_roles(s, q):
    s += sgl.system("Be brief.")
    s += sgl.user(q)
    s += sgl.assistant(sgl.gen("a", max_tokens=5))
    with s.user():
        s += "And why?"
    s += sgl.assistant(sgl.gen("b", max_tokens=5))


@sgl.function
def p_regex(s, who):
    s += "Record of " + who + ":\n"
    s += sgl.gen("rec", regex=r'\{"name": "[a-z]{2,6}", "age": [1-9][0-9]\}', max_tokens=24)


@sgl.function
def p_literal_regex(s):
    s += "Answer:\n" + sgl.gen("ans", regex=r"The answer is (yes|no)\.", max_tokens=12)


@sgl.function
def p_tree(s, q):
    s += INTRO + "Question: " + q + "\n"
    first = s.fork(2)
    first += lambda i: f"Path {i}:" + sgl.gen("step", max_tokens=3, stop="\n")
    for j, branch in enumerate(first):
        second = branch.fork(2)
        second += lambda k: f" option {k}:" + sgl.gen("leaf", max_tokens=3, stop="\n")
        second.join()
    first.join()


@sgl.function
def p_cross_var(s):
    s += INTRO
    forks = s.fork(2)
    forks += lambda i: f"Draft {i}:" + sgl.gen("draft", max_tokens=3)
    s += "Compare:" + forks[1]["draft"] + " vs" + forks[0]["draft"] + sgl.gen("cmp", max_tokens=3)


@sgl.function
def p_scope_int(s):
    s += "Count: "
    with s.var_scope("counted"):
        s += "n=" + sgl.gen_int("n", max_tokens=4)
    s += "\nOK" + sgl.gen("after", max_tokens=2)


@sgl.function
def p_unordered(s, doc):
    s += sgl.order_independent("Document: " + doc + "\n", "Rules: be brief.\n")
    s += "Summary:" + sgl.gen("sum", max_tokens=4)


@sgl.function
def p_concat(s):
    s += INTRO
    forks = s.fork(2)
    forks += lambda i: f"Part {i}:" + sgl.gen("part", max_tokens=3, stop="\n") + "\n"
    forks.join("concate_and_append")
    s += "Joined:" + sgl.gen("joined", max_tokens=3)


PROGRAMS = [
    (p_select, {"review": "lovely place"}), (p_fork, {"topic": "bread"}),
    (p_nested_call, {"x": "abc"}), (p_roles, {"q": "Hi?"}), (p_regex, {"who": "ann"}),
    (p_literal_regex, {}), (p_tree, {"q": "How to cook rice?"}), (p_cross_var, {}),
    (p_scope_int, {}), (p_unordered, {"doc": "text"}), (p_concat, {}),
]


@pytest.mark.parametrize("program, args", PROGRAMS, ids=[p.__name__ for p, _ in PROGRAMS])
def test_compiled_equals_interpreted(runtime, program, args) -> None:
    interpreted = program.run(backend=runtime, temperature=0, **args)
    compiled = program.compile(backend=runtime)
    assert compiled.is_compiled, compiled.fallback_reason
    result = compiled.run(temperature=0, **args)
    assert result.error() is None and interpreted.error() is None, (result.error(), interpreted.error())
    assert result.text() == interpreted.text()
    assert result.variables() == interpreted.variables()


def test_compiled_run_batch_equals_interpreted(runtime) -> None:
    batch = [{"topic": t} for t in ("tea", "soup", "salad", "rice")]
    a = p_fork.run_batch(batch, backend=runtime, temperature=0)
    b = p_fork.compile(backend=runtime).run_batch(batch, temperature=0)
    assert [s.variables() for s in a] == [s.variables() for s in b]


def test_regex_literal_prefix_became_constant(runtime) -> None:
    compiled = p_literal_regex.compile(backend=runtime)
    state = compiled.run(temperature=0)
    assert re.fullmatch(r"The answer is (yes|no)\.", state["ans"])
    assert compiled.stats["jump_forward"]["constant_chars"] == len("The answer is ")
    assert compiled.stats["jump_forward"]["constraints_precompiled"] == 1


SHARED = ("Instructions: classify the customer message into one of the categories billing, "
          "shipping, returns, or other. Consider the whole message, ignore greetings and "
          "signatures, and answer with the category name only. ") * 4


@sgl.function
def classify(s, message):
    s += SHARED + "\nMessage: " + message + "\nCategory:"
    s += sgl.gen("category", max_tokens=2)


def test_run_batch_prefills_shared_prefix_once(runtime) -> None:
    tokens = len(runtime.endpoint.transport.tokenize([SHARED])[0])
    assert tokens >= 300
    sgl.flush_cache(runtime)
    states = classify.compile(backend=runtime).run_batch(
        [{"message": f"My order number {i} has not arrived yet."} for i in range(16)],
        temperature=0)
    metas = [s.get_meta_info("category") for s in states]
    total = sum(m["prompt_tokens"] for m in metas)
    prefilled = sum(m["prompt_tokens"] - m["cached_tokens"] for m in metas) + tokens  # + the hint
    print(f"run_batch 16 x {metas[0]['prompt_tokens']} tokens: prefilled {prefilled} of {total}"
          f" ({prefilled / total:.1%})")
    assert prefilled < 0.35 * total


@sgl.function
def fork_heavy(s, q):
    # Short shared text (under the scheduler's 32-token dedupe block), many children: without a
    # hint the children race to compute it; with the compiler's hint it is prefilled once first.
    s += "Q: " + q + "\n"
    forks = s.fork(8)
    forks += lambda i: f"Think step by step. Try {i}:" + sgl.gen("attempt", max_tokens=2)
    forks.join()


def test_fork_heavy_children_find_the_prefix_cached_when_compiled(runtime) -> None:
    """Whether unhinted children share the prefix depends on how their requests happen to land in
    batches, so the total prefill is a race; what the hint guarantees is deterministic: every
    child finds the whole shared prefix in the cache, the first one included (co-batched unhinted
    children find ~6 of these ~24 tokens)."""
    tokenizer = runtime.get_tokenizer()
    batch = [{"q": q} for q in ("Why is the sky blue?", "Why is grass green?", "Why do cats purr?")]
    sgl.flush_cache(runtime)
    states = fork_heavy.compile(backend=runtime).run_batch(batch, temperature=0)
    for args, state in zip(batch, states):
        state.sync()
        # The hint covers the parent's text and the constant start the children share.
        prefix = len(tokenizer.encode("Q: " + args["q"] + "\nThink step by step. Try"))
        children = state.executor.children  # the fork's child streams, in order
        cached = [child.store.meta_info["attempt"]["cached_tokens"] for child in children]
        assert len(cached) == 8 and min(cached) >= prefix - 1, (args, prefix, cached)
