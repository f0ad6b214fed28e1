"""How requests name their images: per-prompt image_data/video_data, and OpenAI chat parts."""

from __future__ import annotations

import pytest

from sglang.runtime.entrypoints.openai.chat_messages import ChatMedia, flatten_with_marks, message_dicts
from sglang.runtime.entrypoints.openai.errors import APIError
from sglang.runtime.entrypoints.openai.protocol import ChatMessage
from sglang.runtime.managers.generate_input import GenerateReqInput


def _images(**kw):
    return [(it.image_data, it.video_data) for it in GenerateReqInput(**kw).normalize()]


def test_single_prompt_takes_one_image_or_a_list() -> None:
    assert _images(text="a", image_data="x.png") == [(["x.png"], [])]
    assert _images(text="a", image_data=["x.png", "y.png"]) == [(["x.png", "y.png"], [])]
    assert _images(text="a", image_data=None) == [([], [])]
    assert _images(text="a", video_data=["v.mp4"]) == [([], ["v.mp4"])]
    assert _images(text="a", video_data=[["f1.png", "f2.png"]]) == [([], [["f1.png", "f2.png"]])]


def test_batch_takes_one_entry_per_prompt() -> None:
    got = _images(text=["a", "b", "c"], image_data=["x.png", None, ["y.png", "z.png"]])
    assert [g[0] for g in got] == [["x.png"], [], ["y.png", "z.png"]]
    assert _images(text=["a", "b"], image_data=[None, None]) == [([], []), ([], [])]
    with pytest.raises(ValueError, match="one entry per prompt"):
        GenerateReqInput(text=["a", "b"], image_data=["x.png"]).normalize()


def _media() -> ChatMedia:
    return ChatMedia("<image>", "<video>")


def test_chat_image_parts_become_template_parts_in_order() -> None:
    media = _media()
    msgs = [ChatMessage(role="user", content=[
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}},
        {"type": "image_url", "image_url": "http://example.com/b.png"},
        {"type": "video_url", "video_url": {"url": "http://example.com/v.mp4"}},
    ])]
    out = message_dicts(msgs, media)
    assert out[0]["content"] == [{"type": "text", "text": "compare"}, {"type": "image"}, {"type": "image"},
                                 {"type": "video"}]
    assert media.images == ["data:image/png;base64,AAA", "http://example.com/b.png"]
    assert media.videos == ["http://example.com/v.mp4"]
    flat = flatten_with_marks(out, media)
    assert flat[0]["content"] == "compare<image><image><video>"


@pytest.mark.parametrize("part, message", [
    ({"type": "image_url"}, "needs an image URL"),
    ({"type": "image_url", "image_url": {"url": ""}}, "needs an image URL"),
    ({"type": "image_url", "image_url": {"url": "x", "detail": "ultra"}}, "detail must be one of"),
])
def test_bad_image_parts_are_400s(part, message) -> None:
    with pytest.raises(APIError, match=message) as err:
        message_dicts([ChatMessage(role="user", content=[part])], _media())
    assert err.value.status_code == 400


def test_text_only_models_refuse_images_and_video() -> None:
    for part, what in (({"type": "image_url", "image_url": {"url": "x"}}, "images"),
                       ({"type": "video_url", "video_url": {"url": "x"}}, "video")):
        with pytest.raises(APIError, match=f"does not accept {what}"):
            message_dicts([ChatMessage(role="user", content=[part])])


def test_video_to_an_image_only_model_is_refused() -> None:
    with pytest.raises(APIError, match="does not accept video"):
        message_dicts([ChatMessage(role="user", content=[{"type": "video_url", "video_url": {"url": "x"}}])],
                      ChatMedia("<image>", None))
