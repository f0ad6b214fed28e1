"""Request-level tool handling: parser choice and its errors, how tools and past calls reach the
prompt (through a template that renders them, or the family's system prompt when it does not),
and the streamed/complete assistant message."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from sglang.runtime.entrypoints.openai.chat_messages import render_prompt
from sglang.runtime.entrypoints.openai.chat_outputs import ChoiceStream, OutputParsers, finish_reason
from sglang.runtime.entrypoints.openai.errors import APIError
from sglang.runtime.entrypoints.openai.protocol import ChatCompletionRequest
from sglang.runtime.entrypoints.openai.tool_request import plan_tools, with_tools
from sglang.runtime.reasoning.registry import get_reasoning_parser
from sglang.testing.fixtures import tiny_model_dir

PLAIN = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
# A Qwen-2.5-like template: renders tools and assistant tool_calls itself.
QWEN_LIKE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}<|im_start|>assistant\n")
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}]
HISTORY = [{"role": "user", "content": "time?"},
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}]


def request(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": HISTORY, "tools": TOOLS, **kw})


def error_of(fn, *args) -> str:
    with pytest.raises(APIError) as err:
        fn(*args)
    return str(err.value.openai_body())


def test_parser_detected_named_or_refused():
    assert plan_tools(request(), None, QWEN_LIKE, "xgrammar").fmt.name == "qwen25"
    assert plan_tools(request(), "hermes", QWEN_LIKE, "xgrammar").fmt.name == "hermes"  # same markup
    assert "does not match the chat template" in error_of(plan_tools, request(), "mistral", QWEN_LIKE, "xgrammar")
    assert "--tool-call-parser" in error_of(plan_tools, request(), None, PLAIN, "xgrammar")
    assert plan_tools(request(tool_choice="none"), None, PLAIN, "xgrammar") is None


def test_grammar_by_choice_and_backend():
    named = {"type": "function", "function": {"name": "get_time"}}
    assert "TagDispatch" in plan_tools(request(), "hermes", PLAIN, "xgrammar").grammar["ebnf"]
    assert plan_tools(request(tool_choice="required"), "hermes", PLAIN, "xgrammar").grammar["ebnf"]
    assert plan_tools(request(tool_choice=named), "llama3", PLAIN, "xgrammar").grammar is not None
    assert plan_tools(request(tool_choice="required"), "pythonic", PLAIN, "xgrammar").grammar["ebnf"].startswith(
        'root ::= "[" py_call')
    # auto: free text, or a constrained call list when the reply opens with "["
    assert "root ::= [ \\t\\n\\r]* (py_calls | reply_text)" in plan_tools(request(), "pythonic", PLAIN,
                                                                           "xgrammar").grammar["ebnf"]
    assert plan_tools(request(tool_choice="required"), "hermes", PLAIN, "fsm").grammar is None
    assert "needs tools" in error_of(plan_tools, request(tools=None, tool_choice="required"), "hermes", PLAIN,
                                     "xgrammar")
    dup = TOOLS * 2
    assert "more than once" in error_of(plan_tools, request(tools=dup), "hermes", PLAIN, "xgrammar")


def test_template_renders_tools_and_calls():
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    plan = plan_tools(request(), None, QWEN_LIKE, "xgrammar")
    messages = with_tools([dict(m) for m in HISTORY], plan)
    prompt = render_prompt(tok, messages, QWEN_LIKE, False, None, plan.template_tool_list())
    assert "<tools>get_time;</tools>" in prompt
    assert '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>' in prompt


def test_system_prompt_when_template_ignores_tools():
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    plan = plan_tools(request(), "hermes", PLAIN, "xgrammar")
    messages = with_tools([dict(m) for m in HISTORY], plan)
    prompt = render_prompt(tok, messages, PLAIN, False, None)
    assert prompt.startswith("system: # Tools") and json.dumps(TOOLS[0]["function"]) in prompt
    assert 'assistant: <tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>' in prompt
    assert "tool: 12:00" in prompt


def test_message_and_stream_agree():
    plan = plan_tools(request(), "hermes", PLAIN, "xgrammar")
    parsers = OutputParsers(plan, get_reasoning_parser("qwen3"))
    text = ('<think>need the time</think>\nChecking.\n<tool_call>\n{"name": "get_time", "arguments": '
            '{"tz": "CET"}}\n</tool_call>')
    message, has_calls = parsers.message(text)
    assert has_calls and finish_reason("stop", has_calls) == "tool_calls" and finish_reason("length", True) == "length"
    assert (message.reasoning_content, message.content) == ("need the time", "Checking.")
    stream, got = ChoiceStream(parsers), {"r": "", "c": "", "a": ""}
    for k in range(len(text) + 1):
        delta = stream.feed(text[:k], final=k == len(text))
        if delta is None:
            continue
        got["r"] += delta.reasoning_content or ""
        got["c"] += delta.content or ""
        for call in delta.tool_calls or []:
            got["a"] += call.function.arguments
    assert got == {"r": "need the time", "c": "Checking.", "a": message.tool_calls[0].function.arguments}
