"""Role prefixes/suffixes for the frontend's system/user/assistant blocks, derived from Jinja.

Nothing here is written per model: we render conversations whose contents are unique sentinel
strings through the template (HF conventions) and split the output around the sentinels.

Representation. A conversation is rendered as, for every message i,
``prefix(role_i, history) + content_i + suffix(role_i)``, followed (when generating) by the
generation prefix. Suffixes depend only on the role. Prefixes have a steady value
(``role_prefix_and_suffix``) plus overrides keyed by ``(role, previous role or None)`` in
``context_prefixes``; these cover
  * text emitted only at the start (a BOS token, or a default system turn when the
    conversation does not open with one — qwen's prefix for a first user message contains it);
  * templates that fold the system prompt into the first user turn (mistral, gemma): the system
    block becomes ``("<s>[INST] ", "\\n\\n")`` and ``("user", "system")`` maps to ``""``, so
    system + user concatenate into the single folded turn.
``generation_prefix`` is what ``add_generation_prompt`` appends when it differs from the
assistant prefix used for completed turns (mistral's "[/INST]" vs "[/INST] "+content).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sglang.runtime.entrypoints.openai.chat_templates import (
    NAMED_TEMPLATES,
    resolve_chat_template,
)

Context = tuple[str, str | None]


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    role_prefix_and_suffix: Mapping[str, tuple[str, str]]
    default_system_prompt: str | None
    stop_str: tuple[str, ...]
    image_token: str | None = None
    # (role, previous role or None) -> prefix, only where it differs from the steady prefix.
    context_prefixes: Mapping[Context, str] = field(default_factory=dict)
    # Prefix of an assistant turn that the model will generate; None: the steady prefix.
    generation_prefix: str | None = None
    # Text the template emits before the first message (e.g. BOS), for unseen first roles.
    start_text: str = ""

    def get_prefix_and_suffix(self, role: str, hist_messages: list[dict],
                              generating: bool = False) -> tuple[str, str]:
        """Prefix/suffix of a `role` block following `hist_messages` (the earlier messages).

        `generating=True` asks for the assistant prefix before generated content (the text of
        `add_generation_prompt`), which some templates render differently from stored turns.
        """
        if role not in self.role_prefix_and_suffix:
            raise ValueError(f"chat template {self.name!r} has no role {role!r}")
        prefix, suffix = self.role_prefix_and_suffix[role]
        prev = hist_messages[-1]["role"] if hist_messages else None
        if generating and role == "assistant" and self.generation_prefix is not None:
            prefix = self.generation_prefix
            return (prefix if hist_messages else self.start_text + prefix), suffix
        if (role, prev) in self.context_prefixes:
            return self.context_prefixes[(role, prev)], suffix
        return (prefix if hist_messages else self.start_text + prefix), suffix


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    # Same environment settings as transformers' apply_chat_template, so outputs match exactly.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source)


def _sentinel(i: int) -> str:
    # No whitespace, so templates that trim content leave it intact.
    return f"[[SGL-SENTINEL-{i}-7f3a]]"


def _messages(roles: list[str]) -> list[dict]:
    return [{"role": r, "content": _sentinel(i)} for i, r in enumerate(roles)]


_CONV_A = ["user", "assistant", "user", "assistant", "user"]
_CONV_B = ["system"] + _CONV_A
_CONV_C = ["user", "assistant", "system", "user", "assistant", "user"]  # mid-conversation system


class _Renderer:
    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        self.template = _compile(source)
        self.tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(self, roles: list[str], gen: bool = False) -> str:
        return self.template.render(messages=_messages(roles), add_generation_prompt=gen,
                                    **self.tokens)

    def segments(self, roles: list[str]) -> list[str] | None:
        """Text between consecutive sentinels (n + 1 pieces), or None if they don't split."""
        try:
            text = self.render(roles)
        except jinja2.exceptions.TemplateError:
            return None
        segs, pos = [], 0
        for i in range(len(roles)):
            s = _sentinel(i)
            j = text.find(s, pos)
            if j < 0 or text.count(s) != 1:
                return None
            segs.append(text[pos:j])
            pos = j + len(s)
        segs.append(text[pos:])
        return segs

    def standalone_suffix(self, roles: list[str]) -> str | None:
        """What follows the last message when the conversation ends there, if it is rendered."""
        try:
            text = self.render(roles)
        except jinja2.exceptions.TemplateError:
            return None
        s = _sentinel(len(roles) - 1)
        return text.split(s, 1)[1] if s in text else None


def _remove_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise ValueError(f"chat template is not decomposable: {what} {text!r} lacks {prefix!r}")
    return text[len(prefix):]


def derive_chat_template(jinja_source: str, name: str = "derived", bos_token: str = "",
                         eos_token: str = "") -> ChatTemplate:
    """Derive role prefixes/suffixes, default system prompt and stop strings from a template."""
    r = _Renderer(jinja_source, bos_token or "", eos_token or "")
    seg_a = r.segments(_CONV_A)
    if seg_a is None:
        raise ValueError(f"chat template {name!r} does not render user/assistant contents verbatim")
    suffix: dict[str, str] = {}
    for role, k in (("user", 0), ("assistant", 1)):
        tail = r.standalone_suffix(_CONV_A[:k + 1])
        # Fallback when the turn isn't rendered on its own: the whole gap is suffix.
        suffix[role] = tail if tail is not None and seg_a[k + 1].startswith(tail) else seg_a[k + 1]
    # Steady user prefix = gap after an assistant turn minus the assistant suffix.
    steady_user = _remove_prefix(seg_a[2], suffix["assistant"], "gap after assistant")

    seg_b = r.segments(_CONV_B)
    if seg_b is not None:
        tail = r.standalone_suffix(_CONV_B[:1])
        if tail is not None and seg_b[1].startswith(tail):
            suffix["system"] = tail
        elif seg_b[1].endswith(steady_user) and steady_user:
            suffix["system"] = seg_b[1][:-len(steady_user)]
        else:  # system folded into the user turn: the whole gap closes the system block
            suffix["system"] = seg_b[1]

    ctx: dict[Context, str] = {}
    for roles, segs in ((_CONV_A, seg_a), (_CONV_B, seg_b), (_CONV_C, r.segments(_CONV_C))):
        if segs is None:
            continue
        for i, role in enumerate(roles):
            prev = roles[i - 1] if i else None
            pre = segs[i] if prev is None else _remove_prefix(segs[i], suffix[prev], "gap")
            ctx.setdefault((role, prev), pre)

    start_text = bos_token if bos_token and r.render(_CONV_A).startswith(bos_token) else ""
    table = {"user": (ctx[("user", "assistant")], suffix["user"]),
             "assistant": (ctx[("assistant", "user")], suffix["assistant"])}
    if "system" in suffix:
        sys_prefix = ctx.get(("system", "assistant"))
        if sys_prefix is None:  # system only allowed first: drop the start-only text
            first = ctx[("system", None)]
            sys_prefix = first.removeprefix(start_text)
        table["system"] = (sys_prefix, suffix["system"])
    overrides = {k: v for k, v in ctx.items()
                 if v != (table[k[0]][0] if k[1] is not None else start_text + table[k[0]][0])}

    base = r.render(_CONV_A)
    with_gen = r.render(_CONV_A, gen=True)
    gen_prefix = _remove_prefix(with_gen, base, "generation prompt")
    generation_prefix = None if gen_prefix == table["assistant"][0] else gen_prefix

    default_system = _detect_default_system(ctx, suffix)
    stop = suffix["assistant"].strip()
    return ChatTemplate(name=name, role_prefix_and_suffix=MappingProxyType(table),
                        default_system_prompt=default_system, stop_str=(stop,) if stop else (),
                        context_prefixes=MappingProxyType(overrides),
                        generation_prefix=generation_prefix, start_text=start_text)


def _detect_default_system(ctx: dict[Context, str], suffix: dict[str, str]) -> str | None:
    """Text inserted as the system content when the conversation opens without one."""
    first_user, first_sys = ctx.get(("user", None)), ctx.get(("system", None))
    user_after_sys = ctx.get(("user", "system"))
    if first_user is None or first_sys is None or user_after_sys is None:
        return None
    tail = suffix["system"] + user_after_sys
    if (first_user.startswith(first_sys) and first_user.endswith(tail)
            and len(first_user) > len(first_sys) + len(tail)):
        return first_user[len(first_sys):len(first_user) - len(tail)]
    return None


def chat_template_for_tokenizer(tokenizer: Any) -> ChatTemplate:
    """The template of a HF tokenizer (its own Jinja; the plain 'default' one if it has none)."""
    source = getattr(tokenizer, "chat_template", None)
    if isinstance(source, dict):  # multiple named templates: HF uses "default"
        source = source.get("default")
    name = getattr(tokenizer, "name_or_path", None) or "derived"
    if not source:
        source, name = NAMED_TEMPLATES["default"], "default"
    return derive_chat_template(source, name=name,
                                bos_token=getattr(tokenizer, "bos_token", None) or "",
                                eos_token=getattr(tokenizer, "eos_token", None) or "")


def get_chat_template(name_or_spec: str, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
    """A named template (chatml, qwen, llama-3-instruct, mistral, gemma-it, default), a .jinja
    file or a Jinja string, as accepted by the server's `--chat-template`."""
    source = resolve_chat_template(name_or_spec)
    assert source is not None
    name = name_or_spec if name_or_spec in NAMED_TEMPLATES else "custom"
    return derive_chat_template(source, name=name, bos_token=bos_token, eos_token=eos_token)
