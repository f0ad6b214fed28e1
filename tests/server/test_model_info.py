"""/get_model_info exposes what the frontend needs to derive the chat template client-side, and
/generate refuses images on our text-only models."""

from __future__ import annotations

from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_model_dir
from tests.server.http_helpers import DONE, assert_error_body, stream_events, wait_kv_idle


def test_model_info_has_template_and_special_tokens(http):
    info = http.get("/get_model_info").json()
    tok = get_tokenizer(tiny_model_dir("llama"))
    assert info["chat_template"] == tok.chat_template and "{{" in info["chat_template"]
    assert info["bos_token"] == tok.bos_token == "<|begin_of_text|>"
    assert info["eos_token"] == tok.eos_token == "<|eot_id|>"
    assert info["supports_images"] is False
    for key in ("model_path", "tokenizer_path", "served_model_name", "is_generation", "context_length",
                "vocab_size", "max_total_num_tokens"):
        assert key in info


def test_generate_with_image_data_is_400(http, server):
    for image_data in ("data:image/png;base64,AAAA", ["http://x/a.png"], [None, "b.png"]):
        body = {"text": "Describe the picture", "image_data": image_data, "sampling_params": {"max_new_tokens": 2}}
        error = assert_error_body(http.post("/generate", json=body), 400)
        assert "does not accept images" in error["message"]
        stream = http.post("/generate", json={**body, "stream": True})
        assert "does not accept images" in assert_error_body(stream, 400)["message"]
    ok = http.post("/generate", json={"text": "No picture", "image_data": None, "sampling_params": {"max_new_tokens": 2}})
    assert ok.status_code == 200 and ok.json()["meta_info"]["completion_tokens"] == 2
    events = stream_events(http, "/generate", {"text": "Fine", "sampling_params": {"max_new_tokens": 2},
                                               "stream": True, "image_data": [None]})
    assert events[-1] == DONE
    wait_kv_idle(server.base_url)
