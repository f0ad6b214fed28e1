"""`sgl.OpenAI`: run programs on the official OpenAI API or any OpenAI-compatible endpoint.

Chat models get `Prompt.messages` (the chat template only renders text for display); completion
models get `Prompt.text`. Every HTTP request made counts in `num_api_calls`. Errors from the
endpoint become `OpenAIBackendError` with the endpoint's message (and a hint about images when
the request carried some).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from sglang.lang.backend.base_backend import (
    CHAT_MESSAGES,
    CONSTRAINED,
    IMAGES,
    SELECT_EXACT,
    STREAM,
    BaseBackend,
    GenResult,
    Prompt,
)
from sglang.lang.backend.openai_params import (
    chat_logprob_meta,
    completion_logprob_meta,
    finish_meta,
    request_kwargs,
    usage_meta,
)
from sglang.lang.backend.openai_select import (
    choice_entries,
    decide_exact,
    decide_top_logprobs,
    positions_from_content,
)
from sglang.lang.chat_template import ChatTemplate, get_chat_template
from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod
from sglang.lang.ir import SglSamplingParams

# Legacy completion models: davinci-002, babbage-002, gpt-3.5-turbo-instruct, text-*-00x.
# HF "...-Instruct" checkpoints served elsewhere are chat models, so "instruct" alone is not enough.
_COMPLETION_MODEL = re.compile(r"(^|[-/])(davinci|babbage|curie|ada)([-.]|$)|^gpt-[\d.]+(-turbo)?-instruct")
OFFICIAL_HOST = "api.openai.com"
PLACEHOLDER_KEY = "EMPTY"  # OpenAI-compatible servers without --api-key ignore the key
TOP_LOGPROBS = 20  # OpenAI's maximum for chat top_logprobs


class OpenAIBackendError(RuntimeError):
    """The endpoint refused or failed a request; the message is the endpoint's own."""

    def __init__(self, message: str, status_code: Optional[int] = None):
        super().__init__(message)
        self.status_code = status_code


def infer_is_chat_model(model_name: str) -> bool:
    return _COMPLETION_MODEL.search(model_name.lower()) is None


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise ImportError("the OpenAI backend needs the openai package: pip install openai") from exc
    return openai


class OpenAI(BaseBackend):
    """A backend over the `openai` client (lazy import; see the module docstring)."""

    def __init__(self, model_name: str, base_url: Optional[str] = None, api_key: Optional[str] = None,
                 is_chat_model: Optional[bool] = None, chat_template: Optional[str] = None,
                 **client_kwargs: Any) -> None:
        self._openai = _import_openai()
        self.model_name = model_name
        self.is_chat_model = infer_is_chat_model(model_name) if is_chat_model is None else is_chat_model
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.client = self._openai.OpenAI(base_url=base_url, api_key=api_key or PLACEHOLDER_KEY,
                                          **client_kwargs)
        self.base_url = str(self.client.base_url)  # the client also reads OPENAI_BASE_URL
        self.is_official = OFFICIAL_HOST in self.base_url
        if self.is_official and not api_key:
            raise ValueError("the official OpenAI API needs a key: pass api_key=... or set "
                             "OPENAI_API_KEY")
        self.chat_template_name = chat_template or "default"
        self._chat_template: Optional[ChatTemplate] = None
        self.num_api_calls = 0
        self._batch_prompts = True   # one /v1/completions call with a list prompt for select
        self._stream_usage = True    # stream_options.include_usage until the endpoint refuses it
        self.capabilities = self._capabilities()

    def _capabilities(self) -> frozenset[str]:
        caps = {STREAM}
        if self.is_chat_model:
            caps |= {CHAT_MESSAGES, IMAGES}
        else:
            caps.add(SELECT_EXACT)
        if not self.is_official or self.is_chat_model:  # official: json_schema on chat only
            caps.add(CONSTRAINED)
        return frozenset(caps)

    # ------------------------------------------------------------------------ plumbing
    def get_chat_template(self) -> ChatTemplate:
        if self._chat_template is None:
            self._chat_template = get_chat_template(self.chat_template_name)
        return self._chat_template

    def get_server_info(self) -> dict[str, Any]:
        return {"model": self.model_name, "base_url": self.base_url,
                "is_chat_model": self.is_chat_model, "official_openai": self.is_official,
                "num_api_calls": self.num_api_calls}

    def shutdown(self) -> None:
        self.client.close()

    def _describe(self) -> str:
        return f"model {self.model_name!r} at {self.base_url}"

    @contextmanager
    def _errors(self, prompt: Optional[Prompt] = None) -> Iterator[None]:
        """Turn the client's exceptions into OpenAIBackendError with the endpoint's message."""
        try:
            yield
        except self._openai.APIStatusError as exc:
            hint = ""
            if prompt is not None and prompt.images:
                hint = (" (the request carried images: the model behind this endpoint may not "
                        "accept images)")
            raise OpenAIBackendError(f"OpenAI backend ({self._describe()}): HTTP {exc.status_code}: "
                                     f"{_message(exc)}{hint}", exc.status_code) from exc
        except self._openai.APIError as exc:  # connection errors, errors inside a stream
            raise OpenAIBackendError(f"OpenAI backend ({self._describe()}): {_message(exc)}") from exc

    def _create(self, chat: bool, **kwargs: Any) -> Any:
        self.num_api_calls += 1
        api = self.client.chat.completions if chat else self.client.completions
        return api.create(**kwargs)

    def _messages(self, prompt: Prompt, what: str) -> list[dict[str, Any]]:
        if prompt.cur_role != "assistant":
            raise ValueError(f"chat model {self.model_name!r} can only {what} at the start of an "
                             f"assistant block (sgl.assistant(...)); use is_chat_model=False for a "
                             f"completion model")
        return list(prompt.messages)

    def _check_completion_prompt(self, prompt: Prompt) -> None:
        if prompt.images:
            raise ValueError(f"completion model {self.model_name!r} cannot take images; use a chat "
                             f"model (is_chat_model=True) that accepts images")

    def _request(self, prompt: Prompt, params: SglSamplingParams, what: str) -> dict[str, Any]:
        kwargs = request_kwargs(params, model=self.model_name, chat=self.is_chat_model,
                                official=self.is_official)
        if self.is_chat_model:
            kwargs["messages"] = self._messages(prompt, what)
        else:
            self._check_completion_prompt(prompt)
            kwargs["prompt"] = prompt.text
        return kwargs

    # ------------------------------------------------------------------------ generate
    def generate(self, prompt: Prompt, params: SglSamplingParams) -> GenResult:
        kwargs = self._request(prompt, params, "generate")
        with self._errors(prompt):
            resp = self._create(self.is_chat_model, **kwargs)
        choices = sorted(resp.choices, key=lambda c: c.index)
        if self.is_chat_model:
            texts = [c.message.content or "" for c in choices]
        else:
            texts = [c.text for c in choices]
        meta = self._response_meta(resp, choices)
        n = params.n or 1
        return GenResult(text=texts[0], meta_info=meta, texts=texts if n > 1 else None)

    def _response_meta(self, resp: Any, choices: list[Any]) -> dict[str, Any]:
        first = choices[0]
        meta: dict[str, Any] = {"id": resp.id, **usage_meta(resp.usage),
                                "finish_reason": finish_meta(first.finish_reason,
                                                             _extra(first, "matched_stop"))}
        if len(choices) > 1:
            meta["finish_reasons"] = [finish_meta(c.finish_reason, _extra(c, "matched_stop"))
                                      for c in choices]
        if first.logprobs is not None:
            meta.update(chat_logprob_meta(first.logprobs.content) if self.is_chat_model
                        else completion_logprob_meta(first.logprobs))
        return meta

    # ------------------------------------------------------------------------ stream
    def generate_stream(self, prompt: Prompt, params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        if (params.n or 1) > 1:
            raise ValueError("OpenAI backend: streaming supports n=1 only; drop stream or n")
        kwargs = self._request(prompt, params, "generate")
        kwargs["stream"] = True
        with self._errors(prompt):
            stream = self._open_stream(kwargs)
            yield from self._stream_deltas(stream)

    def _open_stream(self, kwargs: dict[str, Any]) -> Any:
        if self._stream_usage:
            try:
                return self._create(self.is_chat_model, stream_options={"include_usage": True},
                                    **kwargs)
            except self._openai.BadRequestError as exc:
                if "stream_options" not in _message(exc):
                    raise
                self._stream_usage = False  # an older server: stream without usage
        return self._create(self.is_chat_model, **kwargs)

    def _stream_deltas(self, stream: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        meta: dict[str, Any] = {"finish_reason": None}
        pieces = 0
        try:
            for chunk in stream:
                meta.setdefault("id", chunk.id)
                if chunk.usage is not None:
                    meta.update(usage_meta(chunk.usage))
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = (choice.delta.content if self.is_chat_model else choice.text) or ""
                    if choice.finish_reason is not None:
                        meta["finish_reason"] = finish_meta(choice.finish_reason,
                                                            _extra(choice, "matched_stop"))
                    if delta:
                        pieces += 1
                        meta["num_stream_chunks"] = pieces
                        yield delta, dict(meta)
        finally:
            stream.close()
        yield "", meta  # final meta: finish reason and usage arrive after the last text

    # ------------------------------------------------------------------------ select
    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        if not choices:
            raise ValueError("select needs at least one choice")
        calls_before = self.num_api_calls
        if self.is_chat_model:
            decision = self._select_chat(prompt, choices, choices_method)
        else:
            decision = self._select_exact(prompt, choices, choices_method)
        decision.meta_info["num_api_calls"] = self.num_api_calls - calls_before
        return decision

    def _select_exact(self, prompt: Prompt, choices: list[str],
                      method: ChoicesSamplingMethod) -> ChoicesDecision:
        self._check_completion_prompt(prompt)
        texts = [prompt.text + c for c in choices]
        if method.requires_unconditional_logprobs:
            texts += list(choices)
        results, usage = self._echo_logprobs(prompt, texts)
        k = len(choices)
        cond, exact = self._entries(results[:k], texts[:k], len(prompt.text))
        uncond = None
        if method.requires_unconditional_logprobs:
            uncond, _ = self._entries(results[k:], texts[k:], 0)
        decision = decide_exact(choices, cond, uncond, method)
        decision.meta_info.update(usage)
        decision.meta_info["completion_tokens"] = 0
        if not exact:
            decision.meta_info["token_alignment"] = "approximate"
        return decision

    @staticmethod
    def _entries(results: list[Any], texts: list[str], boundary: int) -> tuple[list[Any], bool]:
        out, all_exact = [], True
        for lp, text in zip(results, texts):
            entries, exact = choice_entries(lp.tokens or [], lp.token_logprobs or [],
                                            lp.text_offset or [], text, boundary)
            out.append(entries)
            all_exact = all_exact and exact
        return out, all_exact

    def _echo_logprobs(self, prompt: Prompt, texts: list[str]) -> tuple[list[Any], dict[str, Any]]:
        """Echo logprobs of each text: one call with a list prompt, else one call per text."""
        base = {"model": self.model_name, "echo": True, "max_tokens": 0, "logprobs": 1,
                "temperature": 0}
        with self._errors(prompt):
            if self._batch_prompts:
                try:
                    resp = self._create(False, prompt=texts, **base)
                    return self._echo_results(resp, len(texts)), usage_meta(resp.usage)
                except self._openai.BadRequestError:
                    self._batch_prompts = False  # retry one by one; a real error repeats there
            resps = [self._create(False, prompt=t, **base) for t in texts]
        results = [self._echo_results(r, 1)[0] for r in resps]
        usage = {"prompt_tokens": sum(r.usage.prompt_tokens for r in resps if r.usage),
                 "cached_tokens": sum(usage_meta(r.usage).get("cached_tokens", 0) for r in resps)}
        return results, usage

    def _echo_results(self, resp: Any, count: int) -> list[Any]:
        choices = sorted(resp.choices, key=lambda c: c.index)
        if len(choices) != count or any(c.logprobs is None or not c.logprobs.tokens for c in choices):
            raise OpenAIBackendError(f"select on completion model {self.model_name!r} needs echoed "
                                     f"prompt logprobs (echo=True, logprobs=1), which the endpoint "
                                     f"did not return")
        return [c.logprobs for c in choices]

    def _select_chat(self, prompt: Prompt, choices: list[str],
                     method: ChoicesSamplingMethod) -> ChoicesDecision:
        longest = max(len(c) for c in choices)  # a token has at least one character
        params = SglSamplingParams(max_new_tokens=longest + 1, temperature=0.0,
                                   return_logprob=True, top_logprobs_num=TOP_LOGPROBS)
        kwargs = self._request(prompt, params, "select")
        with self._errors(prompt):
            resp = self._create(True, **kwargs)
        choice = resp.choices[0]
        content = choice.logprobs.content if choice.logprobs is not None else None
        if not content:
            raise OpenAIBackendError(
                f"select on chat model {self.model_name!r} needs logprobs, which the endpoint did "
                f"not return; use a completion model (is_chat_model=False) or a backend with "
                f"exact select (RuntimeEndpoint)")
        decision = decide_top_logprobs(choices, positions_from_content(content), method)
        decision.meta_info.update(usage_meta(resp.usage))
        return decision


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(getattr(exc, "message", None) or exc)


def _extra(obj: Any, name: str) -> Any:
    """A field the OpenAI schema lacks but some servers add (ours: matched_stop)."""
    return getattr(obj, name, None)  # the client's models keep unknown fields as attributes
