"""The flashinfer attention backend inside a model runner: prefill and decode logits (decode through
CUDA graphs, padded batch sizes included) are as close to a float32 reference as the triton
backend's are, and configurations FlashInfer cannot run are refused with a message naming the fix."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest
import torch

pytest.importorskip("flashinfer")

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts  # noqa: E402
from sglang.runtime.managers.schedule_batch import ScheduleBatch  # noqa: E402
from sglang.runtime.model_executor.forward_batch import ForwardMode  # noqa: E402
from sglang.testing import tiny_model_dir  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# head_dim 128 with 4 query heads per KV head, as in Llama-3-8B.
OVERRIDES = {"hidden_size": 1024, "intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
             "num_hidden_layers": 2}
CASES = {  # name: (arch, config overrides, decode on tensor cores)
    "llama": ("llama", {}, False),
    "gemma2": ("gemma2", {}, False),  # logit soft cap, and windowed layers between full ones
    "llama-group8": ("llama", {"hidden_size": 2048, "num_attention_heads": 16}, True),
    "llama-hd64": ("llama", {"num_attention_heads": 16}, True),  # head_dim 64, group 8
}
MAX_BS = 8
STEP_BATCH_SIZES = (5, 1, 8, 3, 5)  # 5 and 3 run padded inside the graphs of 8 and 4
# Both bf16 backends differ from the float32 reference by bf16 rounding, amplified by these random
# tiny models (about 0.1 relative). flashinfer may be a little noisier than triton, not more. A wrong
# row, a stale KV entry, a window off by one or a missing soft cap gives 0.5 or more; a wrong softmax
# scale may not show here, and is checked against float64 in test_kernels_backend.py.
NOISE_FACTOR, NOISE_FLOOR = 2.0, 2e-3


def _runner(arch: str, backend: str, dims: Optional[dict] = None, dtype: str = "bfloat16"):
    from sglang.runtime.model_executor.model_runner import ModelRunner
    from sglang.runtime.server_args import ServerArgs

    return ModelRunner(ServerArgs(
        model_path=tiny_model_dir(arch, **{**OVERRIDES, **(dims or {})}), device="cuda", dtype=dtype, random_seed=0,
        max_total_tokens=4096, max_running_requests=16, cuda_graph_max_bs=MAX_BS, attention_backend=backend))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _check_close_to_reference(logits: Dict[str, torch.Tensor], what: str) -> None:
    ref = logits["reference"]
    err = {name: _rel_err(logits[name], ref) for name in ("triton", "flashinfer")}
    assert torch.isfinite(logits["flashinfer"]).all(), what
    assert err["flashinfer"] < NOISE_FACTOR * err["triton"] + NOISE_FLOOR, f"{what}: errors vs float32 {err}"


def _append(reqs: List, tokens: List[int]) -> None:
    for req, tok in zip(reqs, tokens):
        req.output_ids.append(tok)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_track_a_float32_reference_like_triton(case):
    arch, dims, tensor_cores = CASES[case]
    runners = {"reference": _runner(arch, "triton", dims, "float32"), "triton": _runner(arch, "triton", dims),
               "flashinfer": _runner(arch, "flashinfer", dims)}
    assert runners["flashinfer"].attn_backend.use_tensor_cores == tensor_cores
    lens = [3 + 11 * i for i in range(max(STEP_BATCH_SIZES))]  # longer than gemma2's window of 8
    reqs = {name: [make_reqs(random_prompts(1, n, r.vocab_size(), seed=n), 64)[0] for n in lens]
            for name, r in runners.items()}
    drivers = {name: BatchDriver(r) for name, r in runners.items()}
    logits = {}
    for name, driver in drivers.items():
        batch = ScheduleBatch(reqs[name], ForwardMode.EXTEND, driver.res)
        fb = batch.build_extend()
        batch.commit_extend()
        logits[name] = runners[name].forward(fb).next_token_logits.clone()
    _check_close_to_reference(logits, "prefill")
    for step, bs in enumerate(STEP_BATCH_SIZES):
        tokens = logits["reference"].argmax(-1).tolist()  # every runner continues with the same tokens
        for name, driver in drivers.items():
            _append(reqs[name], tokens)
            graphs = runners[name].graph_runner
            replays = graphs.num_replays
            batch = ScheduleBatch(reqs[name][:bs], ForwardMode.DECODE, driver.res)
            logits[name] = runners[name].forward(batch.build_decode()).next_token_logits.clone()
            assert graphs.num_replays == replays + 1, f"{name}: decode of {bs} did not replay a graph"
            batch.commit_decode()
        _check_close_to_reference(logits, f"decode step {step} (bs {bs})")
    for name, driver in drivers.items():
        driver.release(reqs[name])
        assert runners[name].allocator.available_size() == runners[name].max_total_num_tokens


def test_refuses_float32_and_names_the_fix():
    with pytest.raises(ValueError, match="--dtype bfloat16"):
        _runner("llama", "flashinfer", dtype="float32")
