"""Server pieces without a running server: templates, request mapping, results, metrics, CLI."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoTokenizer

from sglang.launch_server import build_parser, parse_server_args
from sglang.runtime.entrypoints.openai import results, sampling
from sglang.runtime.entrypoints.openai.chat_templates import NAMED_TEMPLATES, resolve_chat_template, server_chat_template
from sglang.runtime.entrypoints.openai.errors import APIError, from_abort_reason
from sglang.runtime.entrypoints.openai.protocol import ChatCompletionRequest, CompletionRequest
from sglang.runtime.entrypoints.openai.stream_state import StreamState
from sglang.runtime.entrypoints.request_body import validate_model
from sglang.runtime.metrics.collector import MetricsCollector
from sglang.testing.fixtures import tiny_model_dir

UPSTREAM_FLAGS = ("--model-path", "--tokenizer-path", "--host", "--port", "--device", "--dtype", "--context-length",
                  "--load-format", "--served-model-name", "--chat-template", "--mem-fraction-static",
                  "--max-running-requests", "--max-queued-requests", "--max-total-tokens", "--chunked-prefill-size",
                  "--schedule-policy", "--disable-radix-cache", "--attention-backend", "--api-key", "--enable-metrics",
                  "--log-level", "--log-requests", "--skip-server-warmup", "--stream-interval")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_model_dir("llama"))


# ---------------------------------------------------------------------------------- CLI
def test_help_lists_upstream_flags_with_defaults():
    text = build_parser().format_help()
    for flag in UPSTREAM_FLAGS:
        assert flag in text, flag
    assert "(default: 30000)" in text and "(default: 127.0.0.1)" in text


def test_cli_parses_into_server_args_and_rejects_bad_values():
    args = parse_server_args(["--model-path", "/m", "--port", "1234", "--device", "cpu", "--api-key", "k"])
    assert (args.port, args.host, args.api_key, args.served_model_name) == (1234, "127.0.0.1", "k", "/m")
    with pytest.raises(SystemExit):
        parse_server_args(["--model-path", "/m", "--device", "cpu", "--stream-interval", "0"])


# ---------------------------------------------------------------------------------- templates
@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_named_templates_render_and_continue(name, tokenizer):
    template = resolve_chat_template(name)
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                {"role": "assistant", "content": "A partial"}]
    full = tokenizer.apply_chat_template(messages[:2], chat_template=template, tokenize=False,
                                         add_generation_prompt=True)
    assert "U1" in full
    cont = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=False, continue_final_message=True)
    assert cont.endswith("A partial")


def test_template_resolution(tmp_path, tokenizer):
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert resolve_chat_template(str(path)) == path.read_text()
    assert resolve_chat_template("{{ messages[0]['content'] }}") == "{{ messages[0]['content'] }}"
    assert resolve_chat_template(None) is None
    with pytest.raises(ValueError, match="not a built-in name"):
        resolve_chat_template("no-such-template")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_chat_template(str(tmp_path / "missing.jinja"))
    assert server_chat_template(None, tokenizer) is None  # the tokenizer ships one

    class Bare:
        chat_template = None

    assert server_chat_template(None, Bare()) == NAMED_TEMPLATES["default"]


# ---------------------------------------------------------------------------------- request mapping
def test_strict_request_types():
    with pytest.raises(APIError, match="temperature"):
        validate_model({"prompt": "x", "temperature": "0.5"}, CompletionRequest)
    with pytest.raises(APIError, match="max_tokens"):
        validate_model({"prompt": "x", "max_tokens": 1.0}, CompletionRequest)
    req = validate_model({"prompt": "x", "temperature": 1, "stop": None}, CompletionRequest)
    assert req.temperature == 1.0


def test_resolve_max_tokens():
    assert sampling.resolve_max_tokens(None, 10, 100, None) == 90  # chat: up to the context
    assert sampling.resolve_max_tokens(None, 95, 100, 16) == 5  # completions default, capped by room
    assert sampling.resolve_max_tokens(0, 10, 100, 16) == 0
    for bad in (-1, 91):
        with pytest.raises(APIError):
            sampling.resolve_max_tokens(bad, 10, 100, None)
    with pytest.raises(APIError, match="shorten the prompt"):
        sampling.resolve_max_tokens(None, 100, 100, None)


def test_sampling_params_mapping():
    req = validate_model({"messages": [{"role": "user", "content": "x"}], "min_tokens": 2, "top_k": 5, "seed": 3,
                          "stop": "END", "response_format": {"type": "json_object"}}, ChatCompletionRequest)
    params = sampling.sampling_params(req, max_new_tokens=7, n=2)
    assert params == {"max_new_tokens": 7, "n": 2, "min_new_tokens": 2, "top_k": 5, "seed": 3, "stop": "END",
                      "json_schema": sampling.JSON_OBJECT_SCHEMA}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = validate_model({"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": schema}}}, CompletionRequest)
    assert sampling.grammar_from_response_format(req.response_format)["json_schema"].startswith('{"type": "object"')
    with pytest.raises(APIError, match="not both"):
        sampling.sampling_params(validate_model({"prompt": "x", "regex": "a", "response_format": {
            "type": "json_object"}}, CompletionRequest), 4, 1)


def test_logprob_options():
    assert sampling.completion_logprobs(2, echo=True) == sampling.LogprobOptions(True, 2, 0)
    assert sampling.chat_logprobs(True, None) == sampling.LogprobOptions(True, 0, -1)
    assert sampling.chat_logprobs(None, None).return_logprob is False
    with pytest.raises(APIError, match="needs logprobs"):
        sampling.chat_logprobs(False, 2)
    with pytest.raises(APIError):
        sampling.completion_logprobs(21, echo=False)


# ---------------------------------------------------------------------------------- results
def _out(prompt, completion, cached=0, reason=None):
    return {"text": "", "meta_info": {"prompt_tokens": prompt, "completion_tokens": completion,
                                      "cached_tokens": cached, "finish_reason": reason}}


def test_finish_fields_and_usage():
    assert results.finish_fields({"finish_reason": {"type": "stop", "matched": "END"}}) == ("stop", "END")
    assert results.finish_fields({"finish_reason": {"type": "length", "length": 3}}) == ("length", None)
    assert results.finish_fields({"finish_reason": None}) == (None, None)
    usage = results.usage([_out(5, 2, 1), _out(5, 3, 4), _out(7, 1, 0), _out(7, 1, 6)], n=2)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 7, 19)
    assert usage.prompt_tokens_details.cached_tokens == 1


def test_completion_logprobs_offsets_and_shared_texts():
    tokens = [[-0.5, 1, "ab"], [-1.0, 2, "c"]]
    tops = [[[-0.5, 1, "ab"], [-0.7, 9, "ab"]], [[-1.0, 2, "c"], [-2.0, 3, "d"]]]
    lp = results.completion_logprobs(tokens, tops, [10, 12])
    assert lp.text_offset == [10, 12] and lp.tokens == ["ab", "c"]
    assert lp.top_logprobs[0] == {"ab": -0.5}  # the likelier of two tokens with the same text wins
    assert results.completion_logprobs([[float("-inf"), 4, "x"]], [], [0]).token_logprobs == [results.MIN_LOGPROB]


def test_abort_reasons_become_http_errors():
    error = from_abort_reason({"type": "abort", "message": "queue full", "status_code": 503,
                               "err_type": "ServiceUnavailableError"})
    assert (error.status_code, error.body()["type"], error.body()["message"]) == (503, "ServiceUnavailableError",
                                                                                  "queue full")
    assert from_abort_reason({"type": "length"}) is None and from_abort_reason(None) is None


@given(st.lists(st.text(max_size=5), max_size=8))
def test_stream_deltas_reassemble_cumulative_text(pieces):
    state, sent, cumulative = StreamState(), "", ""
    for piece in pieces:
        cumulative += piece
        sent += state.text_delta(0, cumulative)
    assert sent == cumulative


# ---------------------------------------------------------------------------------- metrics
class _State:
    prompt_tokens, completion_tokens, cached_tokens = 10, 4, 6
    created, first_token_time = 1.0, 1.5
    token_times = [0.01, 0.02, 0.03]
    finished_reason = {"type": "length"}


def _samples(collector):
    return {s.name: s.value for f in text_string_to_metric_families(collector.render().decode()) for s in f.samples}


def test_metrics_collectors_are_independent_and_count():
    first, second = MetricsCollector("m1"), MetricsCollector("m2")  # private registries: no clash
    first.on_finish(_State())
    first.on_abort(_State())
    first.update_server_state({"num_running_reqs": 3, "num_queue_reqs": 2, "token_usage": 0.25})
    samples = _samples(first)
    assert samples["sglang:prompt_tokens_total"] == 10 and samples["sglang:generation_tokens_total"] == 4
    assert samples["sglang:num_requests_total"] == 2 and samples["sglang:num_aborted_requests_total"] == 1
    assert samples["sglang:inter_token_latency_seconds_count"] == 3
    assert samples["sglang:time_to_first_token_seconds_sum"] == pytest.approx(0.5)
    assert samples["sglang:cache_hit_rate"] == pytest.approx(0.6)
    assert samples["sglang:num_running_reqs"] == 3 and samples["sglang:gen_throughput"] > 0
    assert _samples(second)["sglang:num_requests_total"] == 0


# ---------------------------------------------------------------------------------- fast startup failures
def _launch(*args: str):
    import subprocess
    import sys

    from tests.server.server_process import REPO_ROOT

    return subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path", tiny_model_dir("llama"),
                           "--device", "cpu", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_bad_chat_template_fails_before_loading():
    done = _launch("--chat-template", "no-such-template")
    assert done.returncode == 1 and "--chat-template 'no-such-template'" in done.stderr


def test_port_in_use_fails_before_loading():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _launch("--port", str(busy.getsockname()[1]))
    assert done.returncode == 1 and "choose another --port" in done.stderr


# ---------------------------------------------------------------------------------- child watchdog
def test_dead_child_stops_the_server():
    import asyncio
    from types import SimpleNamespace

    from sglang.runtime.entrypoints.server_context import ServerContext
    from sglang.runtime.entrypoints.server_lifecycle import SGLangServer, uvicorn_config

    class Proc:
        def __init__(self, alive):
            self.alive, self.pid, self.exitcode = alive, 123, None if alive else -9

        def is_alive(self):
            return self.alive

    procs = [("scheduler", Proc(True)), ("detokenizer", Proc(True))]
    tm = SimpleNamespace(procs=procs, close=lambda: None)
    ctx = ServerContext(parse_server_args(["--model-path", "/m", "--device", "cpu"]), tm)
    server = SGLangServer(uvicorn_config(ctx), ctx)

    async def run():
        watch = asyncio.ensure_future(server.watch_children())
        await asyncio.sleep(0.1)
        assert not watch.done() and not server.should_exit  # all alive: keeps watching
        procs[1][1].alive = False
        await asyncio.wait_for(watch, 5)

    asyncio.run(run())
    assert server.should_exit and server.exit_code == 1
