"""LoRA through the Engine API: lora_path per prompt, unknown names refused, adapters loaded and
unloaded at run time, and 200 requests over 8 adapters with --max-loras-per-batch 2 all finish."""

from __future__ import annotations

import pytest

import sglang
from sglang.testing.tiny_lora import write_peft_adapter

GREEDY = {"max_new_tokens": 4, "temperature": 0.0, "ignore_eos": True}


@pytest.fixture(scope="module")
def eight_adapters(lora_dirs, tmp_path_factory):
    base, adapters = lora_dirs["llama"]
    root = tmp_path_factory.mktemp("eight")
    extra = {f"b{i}": write_peft_adapter(base, str(root / f"b{i}"), r=2, seed=10 + i) for i in range(4)}
    return base, {**adapters, **extra}


@pytest.fixture(scope="module")
def engine(eight_adapters):
    base, adapters = eight_adapters
    with sglang.Engine(model_path=base, device="cpu", dtype="float32", random_seed=0, max_loras_per_batch=2,
                       lora_paths=[f"{n}={p}" for n, p in adapters.items()]) as eng:
        yield eng


def test_two_hundred_requests_over_eight_adapters(engine, eight_adapters):
    names = list(eight_adapters[1])
    assert len(names) == 8
    prompts = [f"request {i} says" for i in range(200)]
    loras = [names[i % 8] for i in range(200)]
    outs = engine.generate(prompts, GREEDY, lora_path=loras)
    assert len(outs) == 200
    assert all(o["meta_info"]["completion_tokens"] == 4 for o in outs)
    # the same prompt under one adapter alone gives the same tokens as inside the big mixed run
    alone = engine.generate(prompts[9], GREEDY, lora_path=loras[9])
    assert alone["output_ids"] == outs[9]["output_ids"]


def test_unknown_adapter_and_bad_lora_path(engine):
    with pytest.raises(ValueError, match=r"'nope' is not loaded; loaded adapters: \['a1'"):
        engine.generate("hi", GREEDY, lora_path="nope")
    with pytest.raises(ValueError, match="lora_path"):
        engine.generate(["a", "b"], GREEDY, lora_path=["a1"])


def test_load_and_unload_at_run_time(engine, eight_adapters):
    base, adapters = eight_adapters
    reply = engine.load_lora_adapter("late", adapters["a2"])
    assert reply["success"] and "late" in reply["loaded"]
    same = engine.generate("the same text", GREEDY, lora_path="late")
    ref = engine.generate("the same text", GREEDY, lora_path="a2")
    assert same["output_ids"] == ref["output_ids"]
    assert engine.unload_lora_adapter("late")["success"]
    missing = engine.unload_lora_adapter("late")
    assert not missing["success"] and "no LoRA adapter named 'late'" in missing["message"]
    bad = engine.load_lora_adapter("broken", base)  # a base checkpoint is not an adapter
    assert not bad["success"] and "adapter_config.json" in bad["message"]


def test_lora_path_without_lora_enabled(lora_dirs):
    base, _ = lora_dirs["llama"]
    with sglang.Engine(model_path=base, device="cpu", random_seed=0) as eng:
        with pytest.raises(ValueError, match="--enable-lora"):
            eng.generate("hi", GREEDY, lora_path="a1")
