"""Derived role prefixes/suffixes must rebuild exactly what apply_chat_template renders."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from sglang.lang.chat_template import (
    ChatTemplate,
    chat_template_for_tokenizer,
    derive_chat_template,
    get_chat_template,
)
from sglang.runtime.entrypoints.openai.chat_templates import NAMED_TEMPLATES
from sglang.testing.fixtures import tiny_model_dir

ARCHES = ["llama", "mistral", "qwen2", "qwen3", "gemma2"]
# Named template -> tiny tokenizer whose special tokens it is rendered with.
NAMED = {"chatml": "qwen2", "qwen": "qwen2", "llama-3-instruct": "llama", "mistral": "mistral",
         "gemma-it": "gemma2", "default": "llama"}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": "You are a math tutor.\nBe kind."},
     {"role": "user", "content": "  spaced  "}, {"role": "assistant", "content": "Sure thing."},
     {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "Any time"},
     {"role": "user", "content": "Bye"}],
]


@cache
def _tokenizer(arch: str) -> Any:
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir(arch))


def build(tmpl: ChatTemplate, messages: list[dict], add_generation_prompt: bool) -> str:
    out = ""
    for i, m in enumerate(messages):
        prefix, suffix = tmpl.get_prefix_and_suffix(m["role"], messages[:i])
        out += prefix + m["content"] + suffix
    if add_generation_prompt:
        out += tmpl.get_prefix_and_suffix("assistant", messages, generating=True)[0]
    return out


def _check(tmpl: ChatTemplate, tok: Any, source: str | None) -> None:
    for msgs in CONVERSATIONS:
        want = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                       chat_template=source)
        assert build(tmpl, msgs, True) == want, msgs
        hist = msgs + [{"role": "assistant", "content": "The answer."}]
        want = tok.apply_chat_template(hist, tokenize=False, chat_template=source)
        assert build(tmpl, hist, False) == want, hist


@pytest.mark.parametrize("arch", ARCHES)
def test_tokenizer_templates_roundtrip(arch: str) -> None:
    tok = _tokenizer(arch)
    _check(chat_template_for_tokenizer(tok), tok, None)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_templates_roundtrip(name: str) -> None:
    tok = _tokenizer(NAMED[name])
    tmpl = get_chat_template(name, bos_token=tok.bos_token or "", eos_token=tok.eos_token or "")
    assert tmpl.name == name
    _check(tmpl, tok, NAMED_TEMPLATES[name])


def test_derived_fields() -> None:
    qwen = get_chat_template("qwen")
    assert qwen.default_system_prompt == "You are a helpful assistant."
    assert qwen.stop_str == ("<|im_end|>",)
    assert qwen.role_prefix_and_suffix["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    # The default system turn is part of the first user prefix only.
    assert qwen.get_prefix_and_suffix("user", [])[0].startswith("<|im_start|>system\nYou are")
    assert get_chat_template("chatml").default_system_prompt is None

    llama = get_chat_template("llama-3-instruct", bos_token="<BOS>")
    assert llama.stop_str == ("<|eot_id|>",)
    first = llama.get_prefix_and_suffix("system", [])[0]
    later = llama.get_prefix_and_suffix("system", [{"role": "user", "content": "x"}])[0]
    assert first == "<BOS>" + later == "<BOS><|start_header_id|>system<|end_header_id|>\n\n"

    mistral = get_chat_template("mistral", bos_token="<s>", eos_token="</s>")
    assert mistral.stop_str == ("</s>",)
    # System folded into the first user turn: system block opens [INST], user adds nothing.
    assert mistral.get_prefix_and_suffix("system", []) == ("<s>[INST] ", "\n\n")
    assert mistral.get_prefix_and_suffix("user", [{"role": "system", "content": "s"}]) == (
        "", " [/INST]")
    assert get_chat_template("gemma-it", eos_token="<eos>").stop_str == ("<end_of_turn>",)
    assert get_chat_template("default").stop_str == ()


def test_custom_jinja_and_errors() -> None:
    src = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
           "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    tmpl = derive_chat_template(src, name="xml")
    assert tmpl.role_prefix_and_suffix["assistant"] == ("<assistant>", "</assistant>")
    assert tmpl.stop_str == ("</assistant>",)
    assert tmpl.generation_prefix is None
    with pytest.raises(ValueError):
        derive_chat_template("{{ 'constant' }}")
    with pytest.raises(ValueError):
        tmpl.get_prefix_and_suffix("tool", [])
