"""A deterministic in-memory backend for testing the interpreter without a model.

`generate` answers with a function of the prompt (by default "<len(text)>" tokens), so tests can
predict every value; every call is recorded. It declares every capability except images.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, Optional

from sglang.lang.backend.base_backend import (CACHE_PREFIX, CONCAT_AND_APPEND, CONSTRAINED,
                                              SELECT_EXACT, STREAM, BaseBackend, GenResult,
                                              Prompt)
from sglang.lang.chat_template import ChatTemplate, get_chat_template
from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod
from sglang.lang.ir import SglSamplingParams


def default_reply(prompt: Prompt, params: SglSamplingParams) -> str:
    return f"<{len(prompt.text)}>"


class ScriptedBackend(BaseBackend):
    capabilities = frozenset({CACHE_PREFIX, CONCAT_AND_APPEND, SELECT_EXACT, STREAM, CONSTRAINED})

    def __init__(self, reply: Callable[[Prompt, SglSamplingParams], str] = default_reply,
                 template: str = "chatml", delay_s: float = 0.0,
                 fail_on: Optional[str] = None, is_chat_model: bool = False) -> None:
        self.reply = reply
        self.template = get_chat_template(template)
        self.delay_s = delay_s
        self.fail_on = fail_on  # a prompt containing this text makes generate raise
        self.is_chat_model = is_chat_model
        self.calls: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def _record(self, kind: str, payload: Any) -> None:
        with self._lock:
            self.calls.append((kind, payload))

    def calls_of(self, kind: str) -> list[Any]:
        with self._lock:
            return [p for k, p in self.calls if k == kind]

    def get_chat_template(self) -> ChatTemplate:
        return self.template

    def _answer(self, prompt: Prompt, params: SglSamplingParams) -> str:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in prompt.text:
            raise RuntimeError(f"scripted failure on {self.fail_on!r}")
        return self.reply(prompt, params)

    def generate(self, prompt: Prompt, params: SglSamplingParams) -> GenResult:
        self._record("generate", (prompt, params))
        n = params.n or 1
        texts = [self._answer(prompt, params) for _ in range(n)]
        meta = {"prompt_tokens": len(prompt.text), "completion_tokens": len(texts[0])}
        return GenResult(texts[0], meta, texts if n > 1 else None)

    def generate_stream(self, prompt: Prompt, params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        self._record("generate_stream", (prompt, params))
        text = self._answer(prompt, params)
        for i in range(0, len(text), 2):
            yield text[i:i + 2], {"completion_tokens": i // 2 + 1}

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        """Scores favour the longest choice: logprob -1/len per character."""
        self._record("select", (prompt, choices))
        logprobs = [[-1.0 / len(c)] * len(c) if c else [] for c in choices]
        uncond = [[-0.5] * len(c) for c in choices]
        return choices_method(choices, [sum(x) / max(len(x), 1) for x in logprobs], logprobs,
                              [[] for _ in choices], uncond)

    def cache_prefix(self, prefix: Prompt) -> None:
        self._record("cache_prefix", prefix.text)

    def concatenate_and_append(self, parent: Prompt, children: list[Prompt]) -> dict[str, Any]:
        self._record("concatenate_and_append", (parent.text, [c.text for c in children]))
        return {"children": len(children)}

    def flush_cache(self) -> bool:
        self._record("flush_cache", None)
        return True
