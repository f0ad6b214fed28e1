"""Weight loading: shards + index, .bin files, tied embeddings, dummy weights, clear errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import KVHarness

LAYER0_K = "model.layers.0.self_attn.k_proj.weight"


def _copy(src: str, dst) -> str:
    out = os.path.join(str(dst), "ckpt")
    shutil.copytree(src, out)
    return out


def _rewrite(path: str, edit) -> None:
    """Apply edit(dict of tensors) to the single-file checkpoint at `path`."""
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def _state(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _last_logits(model, mc, prompts) -> torch.Tensor:
    h = KVHarness.for_config(model, mc)
    return h.extend([h.new_request() for _ in prompts], prompts).next_token_logits


def test_sharded_checkpoint_with_index_equals_single_file(tiny_ckpt, tmp_path):
    single = load_model(ModelConfig(tiny_ckpt("llama")))
    sharded_dir = _copy(tiny_ckpt("llama", shards=3), tmp_path)
    index = json.load(open(os.path.join(sharded_dir, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) == 3
    # A stray file the index does not list must be ignored (it would fail with a shape error).
    save_file({LAYER0_K: torch.zeros(3, 3)}, os.path.join(sharded_dir, "consolidated.safetensors"))
    sharded = load_model(ModelConfig(sharded_dir))
    a, b = _state(single), _state(sharded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pt_bin_checkpoint(tiny_ckpt, tmp_path):
    src = tiny_ckpt("qwen3")
    out = tmp_path / "bin"
    out.mkdir()
    shutil.copy(os.path.join(src, "config.json"), out)
    torch.save(load_file(os.path.join(src, "model.safetensors")), out / "pytorch_model.bin")
    ref = _state(load_model(ModelConfig(src)))
    for fmt in ("pt", "auto"):
        got = _state(load_model(ModelConfig(str(out)), load_format=fmt))
        assert all(torch.equal(ref[k], got[k]) for k in ref)
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        load_model(ModelConfig(str(out)), load_format="safetensors")


@pytest.mark.parametrize("arch", ["qwen2", "gemma2"])
def test_tied_embeddings_share_one_parameter(arch, tiny_ckpt, tmp_path):
    path = tiny_ckpt(arch)
    assert "lm_head.weight" not in load_file(os.path.join(path, "model.safetensors"))
    mc = ModelConfig(path)
    model = load_model(mc)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert "lm_head.weight" not in dict(model.named_parameters())
    prompts = [[1, 2, 3, 4, 5]]
    expected = _last_logits(model, mc, prompts)
    # A tied checkpoint that still stores an lm_head copy: the copy is ignored.
    copy = _copy(path, tmp_path)
    _rewrite(copy, lambda t: t.__setitem__("lm_head.weight",
                                           torch.randn_like(t["model.embed_tokens.weight"])))
    mc2 = ModelConfig(copy)
    torch.testing.assert_close(_last_logits(load_model(mc2), mc2, prompts), expected)


def test_untied_lm_head_is_separate(tiny_ckpt):
    model = load_model(ModelConfig(tiny_ckpt("llama")))
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_wrong_shape_names_the_tensor(tiny_ckpt, tmp_path):
    path = _copy(tiny_ckpt("llama"), tmp_path)
    _rewrite(path, lambda t: t.__setitem__(LAYER0_K, t[LAYER0_K][:-1].clone()))
    with pytest.raises(ValueError, match=f"{LAYER0_K}.*checkpoint has \\(31, 64\\).*expects \\(32, 64\\)"):
        load_model(ModelConfig(path))


@pytest.mark.parametrize("name", ["model.layers.1.mlp.up_proj.weight", "model.norm.weight",
                                  "model.layers.0.self_attn.v_proj.weight"])
def test_missing_tensor_is_named(name, tiny_ckpt, tmp_path):
    path = _copy(tiny_ckpt("llama"), tmp_path)
    _rewrite(path, lambda t: t.pop(name))
    with pytest.raises(ValueError, match=f"missing 1 tensor.*{name}"):
        load_model(ModelConfig(path))


def test_dummy_weights_need_only_config_json(tiny_ckpt, tmp_path):
    cfg_only = tmp_path / "cfg"
    cfg_only.mkdir()
    shutil.copy(os.path.join(tiny_ckpt("gemma2"), "config.json"), cfg_only)
    mc = ModelConfig(str(cfg_only))
    with pytest.raises(FileNotFoundError, match="--load-format dummy"):
        load_model(mc)
    model = load_model(mc, load_format="dummy", seed=7)
    logits = _last_logits(model, mc, [[1, 2, 3], [9, 8, 7, 6, 5], [400, 2]])
    assert torch.isfinite(logits).all()
    assert logits.std(dim=-1).min() > 0.05  # not flat
    assert len(set(logits.argmax(-1).tolist())) > 1  # different prompts, different predictions
    same, other = _state(load_model(mc, "dummy", seed=7)), _state(load_model(mc, "dummy", seed=8))
    ref = _state(model)
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert not torch.equal(ref["model.layers.0.self_attn.qkv_proj.weight"],
                           other["model.layers.0.self_attn.qkv_proj.weight"])


def test_low_precision_load(tiny_ckpt):
    mc = ModelConfig(tiny_ckpt("llama"), dtype="bfloat16")
    model = load_model(mc)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.layers[0].self_attn.rotary_emb.cos_cache.dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32  # restored after construction
    logits = _last_logits(model, mc, [[5, 6, 7]])
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    mc32 = ModelConfig(tiny_ckpt("llama"))
    ref = _last_logits(load_model(mc32), mc32, [[5, 6, 7]])
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))


def test_context_length_beyond_rope_table_grows_it(tiny_ckpt):
    mc = ModelConfig(tiny_ckpt("llama"), context_length=1500)  # model limit is 1024
    model = load_model(mc)
    assert model.model.layers[0].self_attn.rotary_emb.cos_cache.shape[0] >= 1500


def test_unsupported_architecture_lists_supported(tiny_ckpt, tmp_path):
    path = _copy(tiny_ckpt("llama"), tmp_path)
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["architectures"] = ["FancyForCausalLM"]
    json.dump(cfg, open(cfg_path, "w"))
    expected = "'FancyForCausalLM' is not supported.*Gemma2ForCausalLM.*LlamaForCausalLM"
    with pytest.raises(ValueError, match=expected):
        ModelConfig(path)
