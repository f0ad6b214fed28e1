"""The user-facing generate request (native /generate body and Engine.generate arguments).

Accepts one prompt or a batch (text, or input_ids), with per-request or shared sampling params,
and normalises it into a list of single requests. Type errors raise ValueError with a message
naming the field, which the HTTP layer returns as a 400.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

if TYPE_CHECKING:
    from sglang.runtime.managers.prompt_limits import PromptLimits


@dataclass
class SingleGenerateInput:
    rid: str
    text: Optional[str]
    input_ids: Optional[List[int]]
    sampling_params: Dict[str, Any]
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    token_ids_logprob: Optional[List[int]] = None
    return_text_in_logprobs: bool = False
    stream: bool = False
    image_data: List[Any] = field(default_factory=list)  # this prompt's images, in prompt order
    video_data: List[Any] = field(default_factory=list)
    mm_inputs: Any = None  # processed already, with input_ids (internal: chat completions)
    lora_path: Optional[str] = None  # LoRA adapter name; None: the base model


@dataclass
class GenerateReqInput:
    text: Optional[Union[str, List[str]]] = None
    input_ids: Optional[Union[List[int], List[List[int]]]] = None
    sampling_params: Optional[Union[Dict[str, Any], List[Dict[str, Any]]]] = None
    rid: Optional[Union[str, List[str]]] = None
    return_logprob: Union[bool, List[bool]] = False
    logprob_start_len: Union[int, List[int]] = -1
    top_logprobs_num: Union[int, List[int]] = 0
    token_ids_logprob: Optional[Union[List[int], List[List[int]]]] = None
    return_text_in_logprobs: bool = False
    stream: bool = False
    # One image (str/bytes/PIL) or a list per prompt; for a batch, a list with one entry per
    # prompt (upstream's shape). Same for videos (a video: a file source or a list of frames).
    image_data: Any = None
    video_data: Any = None
    # Internal (not an HTTP field): one prompt's input_ids came from the multimodal processor and
    # these are its processed images/videos (MultimodalInputs).
    mm_inputs: Any = None
    # LoRA adapter by name (upstream's field name): one for all prompts or one (or None) per prompt.
    lora_path: Optional[Union[str, List[Optional[str]]]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def is_batch(self) -> bool:
        if self.text is not None:
            return not isinstance(self.text, str)
        return bool(self.input_ids) and isinstance(self.input_ids[0], list)

    def normalize(self, limits: Optional["PromptLimits"] = None) -> List[SingleGenerateInput]:
        """One SingleGenerateInput per prompt. With `limits`, a token-id prompt too long for the
        context is refused on its length, before its entries are scanned."""
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("give exactly one of 'text' or 'input_ids'")
        batch = self.is_batch()
        prompts = self._prompts(batch, limits)
        n = len(prompts)
        if batch and n == 0:
            raise ValueError("the batch of prompts is empty")
        params = _per_item(self.sampling_params, n, batch, "sampling_params", dict, {})
        rids = _per_item(self.rid, n, batch, "rid", str, None)
        images = _media_per_prompt(self.image_data, n, batch, "image_data")
        videos = _media_per_prompt(self.video_data, n, batch, "video_data")
        loras = _lora_per_prompt(self.lora_path, n, batch)
        out = []
        for i, (text, ids) in enumerate(prompts):
            sp = params[i] if params[i] is not None else {}
            if not isinstance(sp, dict):
                raise ValueError(f"sampling_params must be an object, got {type(sp).__name__}")
            out.append(SingleGenerateInput(
                rid=rids[i] or uuid.uuid4().hex,
                text=text,
                input_ids=ids,
                sampling_params=dict(sp),
                return_logprob=_bool(_pick(self.return_logprob, i, batch), "return_logprob"),
                logprob_start_len=_int(_pick(self.logprob_start_len, i, batch), "logprob_start_len"),
                top_logprobs_num=_int(_pick(self.top_logprobs_num, i, batch), "top_logprobs_num"),
                token_ids_logprob=self._token_ids_logprob(i, batch),
                return_text_in_logprobs=bool(self.return_text_in_logprobs),
                stream=bool(self.stream),
                image_data=images[i],
                video_data=videos[i],
                mm_inputs=self.mm_inputs if not batch else None,
                lora_path=loras[i],
            ))
        return out

    def _prompts(self, batch: bool, limits: Optional["PromptLimits"]):
        if self.text is not None:
            texts = self.text if batch else [self.text]
            for t in texts:
                if not isinstance(t, str):
                    raise ValueError(f"'text' must be a string or a list of strings, got {type(t).__name__}")
            return [(t, None) for t in texts]
        ids_list = self.input_ids if batch else [self.input_ids]
        for ids in ids_list:
            if limits is not None and isinstance(ids, list):
                limits.check_ids(ids)
            if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
                raise ValueError("'input_ids' must be a list of integers or a list of such lists")
        return [(None, list(ids)) for ids in ids_list]

    def _token_ids_logprob(self, i: int, batch: bool) -> Optional[List[int]]:
        value = self.token_ids_logprob
        if value is None:
            return None
        if batch and value and isinstance(value[0], list):
            value = value[i]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            raise ValueError("'token_ids_logprob' must be a list of token ids")
        return list(value)


def has_images(value: Any) -> bool:
    """Whether `image_data` carries anything: None, "", and (nested) lists of those are empty,
    as upstream batches send [None, ...] for prompts without images."""
    if isinstance(value, (list, tuple)):
        return any(has_images(v) for v in value)
    return value not in (None, "", {})


def _lora_per_prompt(value: Any, n: int, batch: bool) -> List[Optional[str]]:
    if value is None or isinstance(value, str):
        return [value] * n
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise ValueError(f"'lora_path' must be an adapter name or a list of them (None for the base model), "
                         f"got {value!r}")
    if len(value) != n:
        raise ValueError(f"'lora_path' has {len(value)} entries but there are {n} prompts")
    return list(value)


def _media_per_prompt(value: Any, n: int, batch: bool, name: str) -> List[List[Any]]:
    """Each prompt's list of images (or videos). A single prompt takes one item or a list of
    items; a batch takes a list with one entry (an item, a list of items, or None) per prompt.
    A video is a file source or a list of frames, so frames always sit one list deeper."""
    if not has_images(value):
        return [[] for _ in range(n)]
    if not batch:
        return [_as_items(value)]
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} entries" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"'{name}' for a batch of {n} prompts must be a list with one entry per prompt, got {got}")
    return [_as_items(v) for v in value]


def _as_items(value: Any) -> List[Any]:
    if not has_images(value):
        return []
    if not isinstance(value, (list, tuple)):
        return [value]
    return [v for v in value if has_images(v)]


def _per_item(value, n: int, batch: bool, name: str, item_type, default):
    if value is None:
        return [default] * n
    if batch and name == "rid" and not isinstance(value, list):
        raise ValueError("'rid' must be a list with one id per prompt for a batch")
    if isinstance(value, list) and batch:
        if len(value) != n:
            raise ValueError(f"'{name}' has {len(value)} entries but the batch has {n} prompts")
        return value
    if isinstance(value, list) and not batch and item_type is not list:
        raise ValueError(f"'{name}' must be a single {item_type.__name__} for a single prompt")
    return [value] * n


def _pick(value, i: int, batch: bool):
    if batch and isinstance(value, list):
        return value[i]
    return value


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"'{name}' must be a boolean, got {value!r}")
    return value


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"'{name}' must be an integer, got {value!r}")
    return value
