"""NGRAM verify passes under LoRA adapters: every verify row of a request runs under its adapter,
so greedy outputs equal plain decoding's for a batch mixing adapters and the base model (fails if
the verify rows drop the adapter names). DRAFT with LoRA is refused at start."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

from sglang.runtime.server_args import ServerArgs  # noqa: E402
from sglang.testing.fixtures import tiny_model_dir  # noqa: E402
from sglang.testing.scheduler_harness import SchedulerHarness  # noqa: E402
from sglang.testing.tiny_lora import write_peft_adapter  # noqa: E402

GREEDY = {"max_new_tokens": 16, "temperature": 0.0, "ignore_eos": True}


def _run(base, adapters, spec: bool):
    extra = {"speculative_algorithm": "NGRAM", "speculative_disable_batch_size": 64} if spec else {}
    h = SchedulerHarness(base, dtype="float32", lora_paths=[f"{n}={p}" for n, p in adapters.items()], **extra)
    names = [None, "a1", "a2"] * 3
    for i, name in enumerate(names):
        prompt = list(range(3 + i, 23 + i)) * 3  # repeated text: drafts are proposed
        h.submit(f"r{i}", input_ids=prompt, params=GREEDY, lora_path=name)
    res = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    return [res[f"r{i}"].output_ids for i in range(len(names))], h


def test_verify_rows_use_the_request_adapter(tmp_path):
    base = tiny_model_dir("llama")
    adapters = {"a1": write_peft_adapter(base, str(tmp_path / "a1"), r=4, alpha=8.0, seed=1),
                "a2": write_peft_adapter(base, str(tmp_path / "a2"), r=8, alpha=16.0, seed=2)}
    plain, _ = _run(base, adapters, spec=False)
    spec, h = _run(base, adapters, spec=True)
    assert spec == plain
    assert h.scheduler.state()["spec_verify_passes"] > 0


def test_draft_model_with_lora_is_refused(tmp_path):
    base = tiny_model_dir("llama")
    adapter = write_peft_adapter(base, str(tmp_path / "a1"), r=4, seed=1)
    with pytest.raises(ValueError, match="speculative-algorithm DRAFT is not supported yet .NGRAM is."):
        ServerArgs(model_path=base, device="cpu", lora_paths=[f"a1={adapter}"], speculative_algorithm="DRAFT",
                   speculative_draft_model_path=base)
