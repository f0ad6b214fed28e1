"""Chat messages -> prompt text -> token ids, through the (configured or tokenizer's) template."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from sglang.runtime.entrypoints.openai.errors import bad_request
from sglang.runtime.entrypoints.openai.protocol import ChatMessage, ContentPart

_IMAGE_PARTS = ("image_url", "image", "input_image")
_MEDIA_PARTS = ("input_audio", "audio_url", "video_url", "video", "file")
# apply_chat_template's own parameters: chat_template_kwargs may not override them.
_RESERVED_KWARGS = frozenset({"conversation", "tools", "documents", "chat_template", "add_generation_prompt",
                              "continue_final_message", "tokenize", "padding", "truncation", "max_length",
                              "return_tensors", "return_dict", "return_assistant_tokens_mask",
                              "tokenizer_kwargs"})
# Text parts are joined with a space, as upstream SGLang does for string-content templates.
_PART_SEPARATOR = " "


def message_dicts(messages: List[ChatMessage]) -> List[Dict[str, Any]]:
    if not messages:
        raise bad_request("messages must contain at least one message", param="messages")
    out = []
    for i, msg in enumerate(messages):
        role = "system" if msg.role == "developer" else msg.role
        entry: Dict[str, Any] = {"role": role, "content": _flatten_content(msg.content, i)}
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


def _part_text(part: ContentPart, index: int) -> str:
    param = f"messages.{index}.content"
    if part.type == "text":
        if part.text is None:
            raise bad_request("a content part of type 'text' needs a 'text' string", param=param)
        return part.text
    if part.type in _IMAGE_PARTS:
        raise bad_request("this model does not accept images; send text content only", param=param)
    if part.type in _MEDIA_PARTS:
        raise bad_request(f"this model does not accept '{part.type}' content; send text content only",
                          param=param)
    raise bad_request(f"unknown content part type {part.type!r}; use 'text'", param=param)


def render_prompt(tokenizer: Any, messages: List[Dict[str, Any]], template: Optional[str],
                  continue_final_message: bool, template_kwargs: Optional[Dict[str, Any]]) -> str:
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
            continue_final_message=continue_final_message, **kwargs)
    except Exception as exc:  # template errors (raise_exception, bad roles, jinja errors) are the request's
        raise bad_request(f"the chat template could not render these messages: {exc}") from None


def tokenize_prompt(tokenizer: Any, prompt: str) -> List[int]:
    """Token ids of a rendered prompt; templates that write BOS themselves must not get another."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and prompt.startswith(bos))
    return list(tokenizer.encode(prompt, add_special_tokens=add_special))
