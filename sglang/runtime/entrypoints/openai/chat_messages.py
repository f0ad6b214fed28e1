"""Chat messages -> prompt text -> token ids, through the (configured or tokenizer's) template."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sglang.runtime.entrypoints.openai.errors import bad_request
from sglang.runtime.entrypoints.openai.protocol import ChatMessage, ContentPart

_IMAGE_PARTS = ("image_url", "image", "input_image")
_VIDEO_PARTS = ("video_url", "video")
_MEDIA_PARTS = ("input_audio", "audio_url", "file")
_DETAILS = ("auto", "low", "high")


@dataclass
class ChatMedia:
    """Images and videos of a conversation, in prompt order (vision-language models only).
    `image_text`/`video_text` mark one of each in flattened text (see `flatten_with_marks`)."""

    image_text: str
    video_text: Optional[str]
    images: List[Any] = field(default_factory=list)
    videos: List[Any] = field(default_factory=list)
# apply_chat_template's own parameters: chat_template_kwargs may not override them.
_RESERVED_KWARGS = frozenset({"conversation", "tools", "documents", "chat_template", "add_generation_prompt",
                              "continue_final_message", "tokenize", "padding", "truncation", "max_length",
                              "return_tensors", "return_dict", "return_assistant_tokens_mask",
                              "tokenizer_kwargs"})
# Text parts are joined with a space, as upstream SGLang does for string-content templates.
_PART_SEPARATOR = " "


def message_dicts(messages: List[ChatMessage], media: Optional[ChatMedia] = None) -> List[Dict[str, Any]]:
    """Messages for the chat template. With `media` (a vision-language model), content lists keep
    their image/video parts as {"type": "image"} / {"type": "video"} entries, as HF templates expect,
    and the sources are collected into `media` in order."""
    if not messages:
        raise bad_request("messages must contain at least one message", param="messages")
    out = []
    for i, msg in enumerate(messages):
        role = "system" if msg.role == "developer" else msg.role
        content = _media_content(msg.content, i, media) if media is not None and isinstance(msg.content, list) \
            else _flatten_content(msg.content, i)
        entry: Dict[str, Any] = {"role": role, "content": content}
        for key in ("name", "tool_call_id", "tool_calls"):
            value = getattr(msg, key)
            if value is not None:
                entry[key] = value
        out.append(entry)
    return out


def _flatten_content(content: Optional[object], index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return _PART_SEPARATOR.join(_part_text(part, index) for part in content)


def _media_content(parts: List[ContentPart], index: int, media: ChatMedia) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for part in parts:
        if part.type in _IMAGE_PARTS:
            media.images.append(_media_source(part, index, "image"))
            out.append({"type": "image"})
        elif part.type in _VIDEO_PARTS:
            if media.video_text is None:
                raise bad_request("this model does not accept video; send images or text",
                                  param=f"messages.{index}.content")
            media.videos.append(_media_source(part, index, "video"))
            out.append({"type": "video"})
        else:
            out.append({"type": "text", "text": _part_text(part, index)})
    return out


def _media_source(part: ContentPart, index: int, kind: str) -> Any:
    """The URL (http(s), data URL, or an allowed path) of an image/video part, in any of the
    shapes clients send: {"type": "image_url", "image_url": {"url", "detail"}}, "image_url": "...",
    {"type": "image", "image": ...}, {"type": "input_image", "image_url": ...}."""
    param = f"messages.{index}.content"
    extra = part.model_extra or {}
    value = extra.get(part.type) if part.type in extra else extra.get(f"{kind}_url")
    if isinstance(value, dict):
        detail = value.get("detail")
        if detail is not None and detail not in _DETAILS:
            raise bad_request(f"{kind}_url.detail must be one of {', '.join(_DETAILS)}, got {detail!r}", param=param)
        value = value.get("url")
    if not isinstance(value, str) or not value:
        article = "an" if kind == "image" else "a"
        raise bad_request(f"a content part of type {part.type!r} needs {article} {kind} URL, e.g. "
                          f"{{\"type\": \"{kind}_url\", \"{kind}_url\": {{\"url\": \"data:...\"}}}}", param=param)
    return value


def flatten_with_marks(messages: List[Dict[str, Any]], media: ChatMedia) -> List[Dict[str, Any]]:
    """Messages with content lists flattened to text, each image/video written as its mark (for
    chat templates that only render string content)."""
    marks = {"image": media.image_text, "video": media.video_text or ""}
    out = []
    for msg in messages:
        content = msg["content"]
        if isinstance(content, list):
            content = "".join(marks.get(p["type"], "") if p["type"] != "text" else p["text"] for p in content)
        out.append({**msg, "content": content})
    return out


def _part_text(part: ContentPart, index: int) -> str:
    param = f"messages.{index}.content"
    if part.type == "text":
        if part.text is None:
            raise bad_request("a content part of type 'text' needs a 'text' string", param=param)
        return part.text
    if part.type in _IMAGE_PARTS:
        raise bad_request("this model does not accept images; send text content only", param=param)
    if part.type in _VIDEO_PARTS:
        raise bad_request("this model does not accept video; send text content only", param=param)
    if part.type in _MEDIA_PARTS:
        raise bad_request(f"this model does not accept '{part.type}' content; send text content only",
                          param=param)
    raise bad_request(f"unknown content part type {part.type!r}; use 'text'", param=param)


def render_prompt(tokenizer: Any, messages: List[Dict[str, Any]], template: Optional[str],
                  continue_final_message: bool, template_kwargs: Optional[Dict[str, Any]],
                  tools: Optional[List[Dict[str, Any]]] = None) -> str:
    if continue_final_message and messages[-1]["role"] != "assistant":
        raise bad_request("continue_final_message needs the last message to be from the assistant",
                          param="continue_final_message")
    kwargs = dict(template_kwargs or {})
    reserved = sorted(_RESERVED_KWARGS & kwargs.keys())
    if reserved:
        raise bad_request(f"chat_template_kwargs may not set {', '.join(reserved)}", param="chat_template_kwargs")
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise bad_request("this model has no chat template; start the server with --chat-template")
    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message, tools=tools, **kwargs)
    except Exception as exc:  # template errors (raise_exception, bad roles, jinja errors) are the request's
        raise bad_request(f"the chat template could not render these messages: {exc}") from None


def tokenize_prompt(tokenizer: Any, prompt: str) -> List[int]:
    """Token ids of a rendered prompt; templates that write BOS themselves must not get another."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and prompt.startswith(bos))
    return list(tokenizer.encode(prompt, add_special_tokens=add_special))
