"""The transformers fallback on the GPU: tiny GPT-2 / OPT over the paged KV cache with the Triton
attention backend against transformers on the same GPU (float32), and greedy batched == alone
through the Engine (decode runs eagerly: the fallback is never captured in a CUDA graph)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang.runtime.layers.attention.registry import create_attention_backend
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.tiny_foreign import foreign_model_dir
from tests.models.harness import KVHarness, logprobs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TOL = 2e-3  # float32 on both sides; reductions are ordered differently than on the CPU


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_fallback_triton_backend_matches_transformers_on_gpu(arch):
    from transformers import AutoModelForCausalLM

    path = foreign_model_dir(arch)
    mc = ModelConfig(path, device="cuda", dtype="float32")
    model = load_model(mc, device="cuda")
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").cuda().eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in (7, 30, 64)]
    h = KVHarness.for_config(model, mc, device="cuda")
    runner = SimpleNamespace(device="cuda", req_to_token_pool=h.req_to_token_pool, kv_pool=h.kv_pool,
                             model_config=mc, server_args=SimpleNamespace(tp_size=1))
    h.backend = create_attention_backend("triton", runner)
    rows = [h.new_request() for _ in prompts]
    h.extend(rows[1:2], [prompts[1][:10]])  # a cached prefix read back from the pool
    chunks = [prompts[0], prompts[1][10:], prompts[2]]
    out = h.extend(rows, chunks, return_logprob=True)
    offset = 0
    for i, prompt in enumerate(prompts):
        n = len(chunks[i])
        with torch.inference_mode():
            ref = torch.log_softmax(hf(torch.tensor([prompt], device="cuda")).logits[0].float(), -1)[-n:]
        ours = logprobs(out.input_logits[offset: offset + n])
        assert (ours - ref).abs().max().item() < TOL, f"request {i}"
        offset += n


def test_engine_fallback_on_gpu_batched_equals_alone():
    import sglang

    path = foreign_model_dir("gpt2")
    greedy = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 900, (int(n),), generator=gen).tolist()
               for n in torch.randint(3, 60, (16,), generator=gen)]
    with sglang.Engine(model_path=path, device="cuda", dtype="float32", random_seed=0) as engine:
        alone = [engine.generate(input_ids=p, sampling_params=greedy)["output_ids"] for p in prompts]
        together = [o["output_ids"] for o in engine.generate(input_ids=prompts, sampling_params=greedy)]
    assert together == alone
