"""Backend logic shared by RuntimeEndpoint (HTTP) and EngineBackend (in-process Engine).

Both speak our runtime's native protocol: a `/generate` payload (text or input_ids,
sampling_params, logprob arguments) and result dicts `{"text", "output_ids", "meta_info"}`.
The only difference is how a payload travels, so each backend supplies a small `Transport`
and `RuntimeProtocolBackend` implements the frontend interface on top of it.

Select scoring convention (our runtime's `logprob_start_len`): with `logprob_start_len = k >= 1`,
`meta_info["input_token_logprobs"]` holds one `[logprob, token_id, text]` entry per input token
at positions k .. len(ids) - 1 (token k is scored by the logits at position k - 1). Only k = 0
produces a leading `None` entry (the first token has no context), which we never ask for.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional, Union

from sglang.lang.backend.base_backend import (
    CACHE_PREFIX,
    CONCAT_AND_APPEND,
    CONSTRAINED,
    IMAGES,
    SELECT_EXACT,
    STREAM,
    BaseBackend,
    GenResult,
    Prompt,
)
from sglang.lang.chat_template import ChatTemplate, derive_chat_template, get_chat_template
from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod
from sglang.lang.ir import SglSamplingParams

logger = logging.getLogger(__name__)

RUNTIME_CAPABILITIES = frozenset({CACHE_PREFIX, CONCAT_AND_APPEND, SELECT_EXACT, IMAGES, STREAM,
                                  CONSTRAINED})


class RuntimeBackendError(RuntimeError):
    """A request the runtime refused or aborted; the message is the runtime's own."""

    def __init__(self, message: str, status_code: Optional[int] = None):
        super().__init__(message)
        self.status_code = status_code


class Transport(ABC):
    """How payloads reach the runtime. Results are native result dicts (or lists of them)."""

    @abstractmethod
    def generate(self, payload: dict[str, Any]) -> Any:
        """The final result of a /generate payload: a dict, or a list for batches / n > 1."""

    @abstractmethod
    def stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Chunks of a streamed /generate, each with the *cumulative* text of its `index`."""

    @abstractmethod
    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids exactly as the runtime tokenizes a text prompt (special tokens added)."""

    @abstractmethod
    def model_info(self) -> dict[str, Any]:
        """/get_model_info: chat_template, bos_token, eos_token, supports_images, ..."""

    @abstractmethod
    def special_token_id(self, token: str) -> Optional[int]:
        """The id of a special token given as text (None if it is not a single token)."""

    @abstractmethod
    def concat_and_append(self, parent: str, children: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def flush_cache(self) -> bool: ...

    @abstractmethod
    def server_info(self) -> dict[str, Any]: ...

    def close(self) -> None:
        """Release connections (the owner of an engine shuts it down separately)."""

    def describe(self) -> str:
        return type(self).__name__


# ------------------------------------------------------------------------------ payloads
def generate_payload(text: str, prompt: Prompt, params: SglSamplingParams) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text,
                               "sampling_params": params.runtime_sampling_params(),
                               **params.runtime_logprob_args()}
    if prompt.images:
        payload["image_data"] = [img.to_url() for img in prompt.images]
    return payload


def check_result(result: Any) -> None:
    """Raise for an aborted result (the runtime reports some failures as abort finish reasons)."""
    for item in result if isinstance(result, list) else [result]:
        reason = (item.get("meta_info") or {}).get("finish_reason") if isinstance(item, dict) else None
        if isinstance(reason, dict) and reason.get("type") == "abort":
            raise RuntimeBackendError(str(reason.get("message") or "the request was aborted"),
                                      reason.get("status_code"))


def gen_result(result: Any) -> GenResult:
    check_result(result)
    if isinstance(result, list):  # n > 1: one result per sample
        texts = [r["text"] for r in result]
        meta = dict(result[0]["meta_info"])
        meta["n_meta_info"] = [r["meta_info"] for r in result]
        meta["completion_tokens_total"] = sum(r["meta_info"].get("completion_tokens", 0) for r in result)
        return GenResult(text=texts[0], meta_info=meta, texts=texts)
    return GenResult(text=result["text"], meta_info=dict(result["meta_info"]))


def stream_deltas(chunks: Iterator[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Cumulative chunks → (delta, meta) of the first sample; deltas concatenate to the text."""
    sent = ""
    for chunk in chunks:
        if chunk.get("index", 0) != 0:
            continue  # n > 1 streams only the first sample, as GenResult.text does
        check_result(chunk)
        text = chunk.get("text", "")
        if not text.startswith(sent):  # the runtime never rewrites streamed text; be loud if so
            raise RuntimeBackendError(f"streamed text was rewritten: {sent!r} -> {text!r}")
        delta, sent = text[len(sent):], text
        yield delta, dict(chunk.get("meta_info") or {})


# ------------------------------------------------------------------------------ select
@dataclass
class _Item:
    """One scoring request: `ids`, of which the tokens from `start` on are the choice's."""

    choice: int
    ids: list[int]
    start: int
    conditional: bool


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def choice_token_spans(prompt_ids: list[int], full_ids: list[list[int]]) -> list[int]:
    """Where each choice's tokens start in its full ids (token healing: the last prompt tokens
    may merge with the choice's first characters, so this can be before len(prompt_ids))."""
    return [common_prefix_len(prompt_ids, ids) for ids in full_ids]


def scoring_items(full_ids: list[list[int]], starts: list[int], context_id: Optional[int],
                  unconditional: bool) -> list[_Item]:
    items: list[_Item] = []
    for i, (ids, start) in enumerate(zip(full_ids, starts)):
        if start >= len(ids):
            continue  # the choice adds no token: nothing to score
        if start == 0:  # no context at all (empty prompt, no BOS): condition on BOS/EOS instead
            if context_id is None:
                raise RuntimeBackendError("select: the prompt is empty and the tokenizer has no "
                                          "BOS/EOS token to condition the choices on")
            items.append(_Item(i, [context_id] + ids, 1, True))
        else:
            items.append(_Item(i, ids, start, True))
        if unconditional:
            if context_id is None:
                raise RuntimeBackendError("unconditional_likelihood_normalized needs a BOS or EOS "
                                          "token id to score choices without the prompt")
            items.append(_Item(i, [context_id] + ids[start:], 1, False))
    return items


def scoring_payload(items: list[_Item]) -> dict[str, Any]:
    return {"input_ids": [it.ids for it in items],
            "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
            "return_logprob": True, "logprob_start_len": [it.start for it in items]}


def _choice_logprobs(item: _Item, result: dict[str, Any]) -> list[Any]:
    entries = list(result["meta_info"].get("input_token_logprobs") or [])
    expected = item.ids[item.start:]
    got = [e[1] if isinstance(e, (list, tuple)) else None for e in entries]
    if len(entries) != len(expected) or any(g is not None and g != t for g, t in zip(got, expected)):
        raise RuntimeBackendError(f"select: the runtime scored tokens {got} but the choice's tokens "
                                  f"are {expected} (logprob_start_len={item.start})")
    if any(e is None or (isinstance(e, (list, tuple)) and e[0] is None) for e in entries):
        raise RuntimeBackendError("select: the runtime returned a logprob without context")
    return entries


def _mean(entries: list[Any]) -> float:
    if not entries:
        return float("-inf")
    return math.fsum(float(e[0]) if isinstance(e, (list, tuple)) else float(e)
                     for e in entries) / len(entries)


def decide(choices: list[str], items: list[_Item], results: list[dict[str, Any]],
           method: ChoicesSamplingMethod) -> ChoicesDecision:
    n = len(choices)
    cond: list[list[Any]] = [[] for _ in range(n)]
    uncond: list[list[Any]] = [[] for _ in range(n)]
    for item, result in zip(items, results):
        (cond if item.conditional else uncond)[item.choice] = _choice_logprobs(item, result)
    normalized = [_mean(lps) for lps in cond]
    decision = method(choices, normalized, cond, [[] for _ in range(n)],
                      uncond if method.requires_unconditional_logprobs else None)
    meta = dict(decision.meta_info)
    metas = [r["meta_info"] for r in results]
    meta["prompt_tokens"] = sum(m.get("prompt_tokens", 0) for m in metas)
    meta["cached_tokens"] = sum(m.get("cached_tokens", 0) for m in metas)
    meta["completion_tokens"] = 0
    meta["num_scoring_requests"] = len(results)
    return ChoicesDecision(decision.decision, meta)


# ------------------------------------------------------------------------------ backend
class RuntimeProtocolBackend(BaseBackend):
    """The frontend interface over a Transport (see the module docstring)."""

    capabilities = RUNTIME_CAPABILITIES
    is_chat_model = False

    def __init__(self, transport: Transport, chat_template_name: Optional[str] = None):
        self.transport = transport
        self.chat_template_name = chat_template_name
        self._chat_template: Optional[ChatTemplate] = None
        self._model_info: Optional[dict[str, Any]] = None
        self._context_id: Optional[int] = None
        self._context_id_known = False
        self._bos_prefix: Optional[str] = None  # BOS text to drop from prompts ("" = none)

    # ---------------------------------------------------------------- model facts
    def model_info(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = dict(self.transport.model_info())
        return self._model_info

    def get_chat_template(self) -> ChatTemplate:
        if self._chat_template is None:
            template = self._load_chat_template()
            # A vision-language model says how its prompts mark an image (e.g. Qwen2-VL's
            # "<|vision_start|><|image_pad|><|vision_end|>"); sgl.image writes that mark.
            mark = self.model_info().get("image_token")
            if mark and not template.image_token:
                template = replace(template, image_token=mark)
            self._chat_template = template
        return self._chat_template

    def _load_chat_template(self) -> ChatTemplate:
        info = self.model_info()
        bos, eos = info.get("bos_token") or "", info.get("eos_token") or ""
        if self.chat_template_name:
            return get_chat_template(self.chat_template_name, bos_token=bos, eos_token=eos)
        source = info.get("chat_template")
        if not source:
            return get_chat_template("default")
        name = info.get("served_model_name") or info.get("model_path") or "derived"
        try:
            return derive_chat_template(source, name=str(name), bos_token=bos, eos_token=eos)
        except ValueError as exc:  # an exotic template: usable prompts beat no backend
            logger.warning("cannot derive role prefixes from %s's chat template (%s); using the "
                           "'default' template; pass chat_template_name to choose one", name, exc)
            return get_chat_template("default")

    def _context_token_id(self) -> Optional[int]:
        """BOS if the tokenizer has one, else EOS: the 'no prompt' context of a choice."""
        if not self._context_id_known:
            info = self.model_info()
            for token in (info.get("bos_token"), info.get("eos_token")):
                if token:
                    self._context_id = self.transport.special_token_id(token)
                    if self._context_id is not None:
                        break
            self._context_id_known = True
        return self._context_id

    def wire_text(self, text: str) -> str:
        """`text` as sent: a leading BOS text is dropped when the tokenizer adds BOS itself, so
        a chat-template prompt ("<bos><header>...") gets one BOS, as the server's chat route does."""
        if self._bos_prefix is None:
            bos = self.model_info().get("bos_token") or ""
            adds_bos = False
            if bos:
                bos_id = self.transport.special_token_id(bos)
                empty = self.transport.tokenize([""])[0]
                adds_bos = bos_id is not None and empty[:1] == [bos_id]
            self._bos_prefix = bos if adds_bos else ""
        if self._bos_prefix and text.startswith(self._bos_prefix):
            return text[len(self._bos_prefix):]
        return text

    def _check_images(self, prompt: Prompt) -> None:
        if not prompt.images or self.model_info().get("supports_images"):
            return
        info = self.model_info()
        name = info.get("served_model_name") or info.get("model_path") or "this model"
        raise RuntimeBackendError(
            f"the model {name!r} on {self.transport.describe()} does not accept images "
            f"(get_model_info reports supports_images=false); the prompt has "
            f"{len(prompt.images)} image(s): serve a vision-language model or drop sgl.image", 400)

    # ---------------------------------------------------------------- generation
    def generate(self, prompt: Prompt, params: SglSamplingParams) -> GenResult:
        self._check_images(prompt)
        payload = generate_payload(self.wire_text(prompt.text), prompt, params)
        return gen_result(self.transport.generate(payload))

    def generate_stream(self, prompt: Prompt, params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        self._check_images(prompt)
        payload = generate_payload(self.wire_text(prompt.text), prompt, params)
        payload["stream"] = True
        return stream_deltas(self.transport.stream(payload))

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        """Exact scoring of every choice in one batched prefill-only request (see module doc).
        `temperature` is unused: the decision is the method's deterministic argmax."""
        if not choices:
            raise ValueError("select needs at least one choice")
        self._check_images(prompt)
        text = self.wire_text(prompt.text)
        ids = self.transport.tokenize([text] + [text + c for c in choices])
        prompt_ids, full_ids = ids[0], ids[1:]
        starts = choice_token_spans(prompt_ids, full_ids)
        need_uncond = choices_method.requires_unconditional_logprobs
        context = self._context_token_id() if need_uncond or 0 in starts else None
        items = scoring_items(full_ids, starts, context, need_uncond)
        results: list[dict[str, Any]] = []
        if items:
            out = self.transport.generate(scoring_payload(items))
            check_result(out)
            results = out if isinstance(out, list) else [out]
        return decide(choices, items, results, choices_method)

    # ---------------------------------------------------------------- cache
    def cache_prefix(self, prefix: Union[Prompt, str]) -> None:
        """Prefill `prefix`: a Prompt (the interpreter's hint) or plain text (upstream's
        `RuntimeEndpoint.cache_prefix(prefix_str)`)."""
        if isinstance(prefix, str):
            prefix = Prompt(prefix)
        elif not isinstance(prefix, Prompt):
            raise TypeError(f"cache_prefix takes the prefix text (a str), got {type(prefix).__name__}")
        if not prefix.text or (prefix.images and not self.model_info().get("supports_images")):
            return  # a hint only: the real request reports the image error
        payload = generate_payload(self.wire_text(prefix.text), prefix,
                                   SglSamplingParams(max_new_tokens=0))
        check_result(self.transport.generate(payload))

    def precompile_constraint(self, regex: Optional[str] = None,
                              json_schema: Optional[str] = None) -> bool:
        """A prefill-only request carrying the constraint: the runtime compiles it and keeps it
        in its grammar cache, so later requests with the same constraint start at once."""
        params = SglSamplingParams(max_new_tokens=0, regex=regex, json_schema=json_schema)
        check_result(self.transport.generate(generate_payload("\n", Prompt("\n"), params)))
        return True

    def concatenate_and_append(self, parent: Prompt, children: list[Prompt]) -> dict[str, Any]:
        return self.transport.concat_and_append(self.wire_text(parent.text),
                                                [self.wire_text(c.text) for c in children])

    def flush_cache(self) -> bool:
        return bool(self.transport.flush_cache())

    def get_server_info(self) -> dict[str, Any]:
        return self.transport.server_info()

    def shutdown(self) -> None:
        self.transport.close()
