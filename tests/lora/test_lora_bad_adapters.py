"""Adapters that cannot be served are refused at load with a message saying what is wrong:
rank above --max-lora-rank, a target the server does not serve, shapes of another base model,
missing files, unsupported PEFT options; bad flags are refused at start."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sglang.runtime.lora.adapter import LoraAdapterError
from sglang.runtime.server_args import ServerArgs
from sglang.testing.scheduler_harness import SchedulerHarness


@pytest.fixture(scope="module")
def harness(lora_dirs):
    base, adapters = lora_dirs["llama"]
    return SchedulerHarness(base, dtype="float32", lora_paths=[f"a2={adapters['a2']}"], max_lora_rank=8,
                            lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def _copy(src, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def test_rank_above_max(harness, lora_dirs, tmp_path):
    src = _copy(lora_dirs["llama"][1]["a1"], tmp_path)
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["r"] = 16
    (src / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoraAdapterError, match=r"rank 16 but --max-lora-rank is 8"):
        harness.runner.lora.load("big", str(src))


def test_target_not_served(harness, lora_dirs):
    # a1 adapts the MLP too, but this server serves attention projections only
    with pytest.raises(LoraAdapterError, match=r"targets 'model\.layers\.0\.mlp\.(down|gate|up)_proj'.*servable"):
        harness.runner.lora.load("a1", lora_dirs["llama"][1]["a1"])


def test_shapes_of_another_base(harness, lora_dirs, tmp_path):
    src = _copy(lora_dirs["llama"][1]["a2"], tmp_path)
    path = src / "adapter_model.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 8)
    save_file(tensors, str(path))
    with pytest.raises(LoraAdapterError, match=r"does not fit the base model at .*q_proj.*trained for this base"):
        harness.runner.lora.load("other", str(src))


def test_missing_files_and_options(harness, lora_dirs, tmp_path):
    lora = harness.runner.lora
    with pytest.raises(LoraAdapterError, match="is not a directory"):
        lora.load("x", str(tmp_path / "nowhere"))
    src = _copy(lora_dirs["llama"][1]["a2"], tmp_path, "noweights")
    (src / "adapter_model.safetensors").unlink()
    with pytest.raises(LoraAdapterError, match="has no adapter_model.safetensors"):
        lora.load("x", str(src))
    src = _copy(lora_dirs["llama"][1]["a2"], tmp_path, "dora")
    cfg = json.loads((src / "adapter_config.json").read_text())
    (src / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(LoraAdapterError, match="use_dora"):
        lora.load("x", str(src))
    with pytest.raises(LoraAdapterError, match="already loaded"):
        lora.load("a2", lora_dirs["llama"][1]["a2"])
    assert lora.names() == ["a2"]  # nothing half-loaded


def test_bad_flags_and_start(lora_dirs):
    base, adapters = lora_dirs["llama"]
    with pytest.raises(ValueError, match="--max-loras-per-batch must be >= 1"):
        ServerArgs(model_path=base, device="cpu", enable_lora=True, max_loras_per_batch=0)
    with pytest.raises(ValueError, match="--lora-target-modules: unknown"):
        ServerArgs(model_path=base, device="cpu", enable_lora=True, lora_target_modules=["lm_head"])
    with pytest.raises(ValueError, match="names adapter 'a1' twice"):
        ServerArgs(model_path=base, device="cpu", lora_paths=[f"a1={adapters['a1']}", f"a1={adapters['a2']}"])
    args = ServerArgs(model_path=base, device="cpu", lora_paths=[adapters["a1"]])
    assert args.enable_lora  # implied; a bare path is named by its basename
    with pytest.raises(LoraAdapterError, match="rank 4 but --max-lora-rank is 2"):
        SchedulerHarness(base, lora_paths=[adapters["a1"]], max_lora_rank=2)
