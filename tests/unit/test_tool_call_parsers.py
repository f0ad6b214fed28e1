"""Tool-call formats on recorded model outputs: complete parses, streams fed at every character
boundary (and random chunkings) that add up to the complete parse, and malformed markup that
falls back to content."""

from __future__ import annotations

import json
from typing import List, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.function_call.registry import TOOL_CALL_PARSER_NAMES, detect_format, get_format
from sglang.runtime.function_call.streaming import StreamingToolParser
from sglang.runtime.function_call.types import ToolCall

NAMES = frozenset({"get_weather", "get_time"})
W = ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}')
T = ToolCall("get_time", '{"tz": "UTC+1"}')

# (parser, model output, expected content, expected calls)
RECORDED: List[Tuple[str, str, str, Sequence[ToolCall]]] = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>',
     "", [W]),
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
               '\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC+1"}}\n</tool_call>',
     "Let me check.", [W, T]),
    ("qwen25", '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC+1"}}\n</tool_call>', "", [T]),
    ("hermes", "The weather in Paris is 18 °C. Use <b>tags</b> < freely.", "The weather in Paris is 18 °C. "
               "Use <b>tags</b> < freely.", []),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}', "", [W]),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}; '
               '{"name": "get_time", "parameters": {"tz": "UTC+1"}}', "", [W, T]),
    ("llama3", "It is sunny {mostly}.", "It is sunny {mostly}.", []),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, '
                '{"name": "get_time", "arguments": {"tz": "UTC+1"}}]', "", [W, T]),
    ("mistral", 'Sure. [TOOL_CALLS] [{"name": "get_time", "arguments": {"tz": "UTC+1"}}]', "Sure.", [T]),
    ("pythonic", '[get_weather(city="Paris", unit="celsius"), get_time(tz="UTC+1")]', "", [W, T]),
    ("pythonic", "[1, 2, 3] are numbers", "[1, 2, 3] are numbers", []),
    ("deepseekv3", "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                   '{"city": "Paris", "unit": "celsius"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function'
                   '<｜tool▁sep｜>get_time\n```json\n{"tz": "UTC+1"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
     "Checking.", [W, T]),
]

MALFORMED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": Paris}}\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>'),  # not a declared tool
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa'),  # cut off
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}'),
    ("mistral", '[TOOL_CALLS] {"name": "get_weather"}'),
    ("pythonic", '[get_weather(city=Paris)]'),
    ("deepseekv3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\nnot json"),
]
MARKUP = ("<tool_call>", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "<｜tool▁calls▁begin｜>", "tool▁sep")


def stream(parser: str, chunks: Sequence[str]) -> Tuple[str, List[ToolCall], List[str]]:
    """Content, calls and content deltas of a stream, feeding the growing text chunk by chunk."""
    streamer = StreamingToolParser(get_format(parser), NAMES)
    text, content, deltas, names, args = "", "", [], [], []
    for i, chunk in enumerate(chunks):
        text += chunk
        piece, calls = streamer.feed(text, final=i == len(chunks) - 1)
        content += piece
        deltas.append(piece)
        for delta in calls:
            if delta.name is not None:
                assert delta.index == len(names) and delta.id.startswith("call_")
                names.append(delta.name)
                args.append("")
            else:
                assert delta.id is None
            args[delta.index] += delta.arguments
    return content, [ToolCall(n, a) for n, a in zip(names, args)], deltas


@pytest.mark.parametrize("parser,output,content,calls", RECORDED)
def test_complete_parse(parser, output, content, calls):
    got_content, got_calls = get_format(parser).parse(output, NAMES)
    assert got_content == content
    assert got_calls == list(calls)
    for call in got_calls:
        assert isinstance(json.loads(call.arguments), dict)


@pytest.mark.parametrize("parser,output,content,calls", RECORDED)
def test_stream_at_every_character_boundary(parser, output, content, calls):
    got_content, got_calls, deltas = stream(parser, list(output) + [""])
    assert (got_content, got_calls) == get_format(parser).parse(output, NAMES)
    if calls:
        assert not any(m in got_content for m in MARKUP)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(RECORDED), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_stream_random_chunks(case, cuts):
    parser, output = case[0], case[1]
    bounds = sorted({min(c, len(output)) for c in cuts} | {0, len(output)})
    chunks = [output[a:b] for a, b in zip(bounds, bounds[1:])] + [""]
    got_content, got_calls, _ = stream(parser, chunks)
    assert (got_content, got_calls) == get_format(parser).parse(output, NAMES)


@pytest.mark.parametrize("parser,output", MALFORMED)
def test_malformed_markup_is_content(parser, output):
    content, calls = get_format(parser).parse(output, NAMES)
    assert calls == [] and content == output
    streamed, _, _ = stream(parser, [output[:k] for k in range(1, len(output) + 1)])
    assert streamed.endswith(output[-10:])  # the stream ends with the same text as content


@pytest.mark.parametrize("parser", TOOL_CALL_PARSER_NAMES)
def test_rendered_calls_parse_back(parser):
    fmt = get_format(parser)
    rendered = fmt.render_calls([W, T])
    assert fmt.parse(rendered, NAMES) == ("", [W, T])


def test_detect_from_template():
    assert detect_format("{{ '<|im_start|>' }}{% if tools %}<tool_call>{% endif %}").name == "qwen25"
    assert detect_format("{% if tools %}<tool_call>{% endif %}").name == "hermes"
    assert detect_format("<|python_tag|> ipython").name == "llama3"
    assert detect_format("[AVAILABLE_TOOLS] [TOOL_CALLS]").name == "mistral"
    assert detect_format("{{ messages }}") is None
    with pytest.raises(ValueError, match="unknown tool-call parser 'nope'"):
        get_format("nope")
