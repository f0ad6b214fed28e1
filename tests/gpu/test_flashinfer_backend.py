"""The flashinfer attention backend inside a model runner: prefill and decode logits (decode through
CUDA graphs, padded batch sizes included) match the triton backend's on the same checkpoint, and
configurations FlashInfer cannot run are refused with a message naming the fix."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

pytest.importorskip("flashinfer")

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts  # noqa: E402
from sglang.runtime.managers.schedule_batch import ScheduleBatch  # noqa: E402
from sglang.runtime.model_executor.forward_batch import ForwardMode  # noqa: E402
from sglang.testing import tiny_model_dir  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# head_dim 128 with 4 query heads per KV head (tensor-core decode), as in Llama-3-8B.
OVERRIDES = {"hidden_size": 1024, "intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
             "num_hidden_layers": 2}
CASES = {  # name: (arch, config overrides, decode on tensor cores)
    "llama": ("llama", {}, True),
    "gemma2": ("gemma2", {}, True),  # logit soft cap, and windowed layers between full ones
    "llama-group2": ("llama", {"num_key_value_heads": 4}, False),  # 2 query heads per KV head: CUDA-core decode
    "llama-hd64": ("llama", {"num_attention_heads": 16, "num_key_value_heads": 4}, True),  # head_dim 64 (Llama-3.2-1B)
}
MAX_BS = 8
STEP_BATCH_SIZES = (5, 1, 8, 3, 5)  # 5 and 3 run padded inside the graphs of 8 and 4
# bf16 logits of two attention implementations, amplified by the model; a wrong row or a stale
# KV entry is an O(1) error.
TOL = 2e-2


def _runner(arch: str, backend: str, dims: Optional[dict] = None, **extra):
    from sglang.runtime.model_executor.model_runner import ModelRunner
    from sglang.runtime.server_args import ServerArgs

    args = dict(device="cuda", dtype="bfloat16", random_seed=0, max_total_tokens=4096, max_running_requests=16,
                cuda_graph_max_bs=MAX_BS, attention_backend=backend)
    args.update(extra)
    return ModelRunner(ServerArgs(model_path=tiny_model_dir(arch, **{**OVERRIDES, **(dims or {})}), **args))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_triton_backend_through_graph_replays(case):
    arch, dims, tensor_cores = CASES[case]
    runners = {name: _runner(arch, name, dims) for name in ("triton", "flashinfer")}
    assert runners["flashinfer"].attn_backend.use_tensor_cores == tensor_cores
    lens = [3 + 11 * i for i in range(max(STEP_BATCH_SIZES))]  # longer than gemma2's window of 8
    reqs = {name: [make_reqs(random_prompts(1, n, r.vocab_size(), seed=n), 64)[0] for n in lens]
            for name, r in runners.items()}
    drivers = {name: BatchDriver(r) for name, r in runners.items()}
    prefill = {}
    for name, driver in drivers.items():
        batch = ScheduleBatch(reqs[name], ForwardMode.EXTEND, driver.res)
        fb = batch.build_extend()
        batch.commit_extend()
        prefill[name] = runners[name].forward(fb).next_token_logits.clone()
    assert _rel_err(prefill["flashinfer"], prefill["triton"]) < TOL, "prefill logits differ"
    tokens = prefill["triton"].argmax(-1).tolist()
    for name in runners:
        for req, tok in zip(reqs[name], tokens):
            req.output_ids.append(tok)
    for step, bs in enumerate(STEP_BATCH_SIZES):
        logits = {}
        for name, driver in drivers.items():
            graphs = runners[name].graph_runner
            replays = graphs.num_replays
            batch = ScheduleBatch(reqs[name][:bs], ForwardMode.DECODE, driver.res)
            logits[name] = runners[name].forward(batch.build_decode()).next_token_logits.clone()
            assert graphs.num_replays == replays + 1, f"{name}: decode of {bs} did not replay a graph"
            batch.commit_decode()
        assert torch.isfinite(logits["flashinfer"]).all()
        err = _rel_err(logits["flashinfer"], logits["triton"])
        assert err < TOL, f"step {step} (bs {bs}): flashinfer vs triton logits relative error {err:.2e}"
        for name in runners:  # both continue with the same tokens
            for req, tok in zip(reqs[name][:bs], logits["triton"].argmax(-1).tolist()):
                req.output_ids.append(tok)
    for name, driver in drivers.items():
        driver.release(reqs[name])
        assert runners[name].allocator.available_size() == runners[name].max_total_num_tokens


def test_refuses_float32_and_names_the_fix():
    with pytest.raises(ValueError, match="--dtype bfloat16"):
        _runner("llama", "flashinfer", dtype="float32")
