"""The tiny-checkpoint factory: HF loadability, sharding, determinism, tokenizers, shapes.

Measured greedy statistics (8 random prompts x 16 steps, HF float32; 32 prompts in brackets):
top-1/top-2 logit gap > 1e-3 in 100% of steps for every arch [qwen2: 99.8%], median gap
0.5-1.7, all outputs distinct across prompts, no run hits EOS in its first 4 tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from sglang.testing import SUPPORTED_SHAPES, make_tiny_checkpoint, tiny_model_dir
from sglang.testing.fixtures import CACHE_ENV
from sglang.testing.tiny_model import ARCHES, main

# transformers class each tiny arch must load as (the factory's own table, checked against the
# registry below so every tiny arch is one we serve).
EXPECTED_CLASS = {name: spec.architecture for name, spec in ARCHES.items()}
QWEN_ATTENTION_BIAS = ("qwen2", "qwen2_moe")
QK_NORM = ("qwen3", "qwen3_moe")


def _tok_family(arch: str) -> str:
    """The tokenizer family the arch uses: its own, or the one its ArchSpec borrows."""
    return ARCHES[arch].tokenizer_family(arch)


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Count to 3."},
]
EXPECTED_CHAT = {
    "llama": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
             "<|start_header_id|>user<|end_header_id|>\n\nCount to 3.<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "qwen2": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nCount to 3.<|im_end|>\n"
             "<|im_start|>assistant\n",
    "mistral": "<s>[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] Count to 3. [/INST]",
    "gemma2": "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
              "Hello!<end_of_turn>\n<start_of_turn>user\nCount to 3.<end_of_turn>\n"
              "<start_of_turn>model\n",
}
EXPECTED_CHAT["qwen3"] = EXPECTED_CHAT["qwen2"]
STOP_TOKENS = {
    "llama": ["<|eot_id|>", "<|end_of_text|>"], "mistral": ["</s>"],
    "qwen2": ["<|im_end|>", "<|endoftext|>"], "qwen3": ["<|im_end|>", "<|endoftext|>"],
    "gemma2": ["<end_of_turn>", "<eos>"],
}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny models are ~10x faster single-threaded on a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dir_hashes(path: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).iterdir())}


def _tensor_names(path: str) -> set[str]:
    names: set[str] = set()
    for f in Path(path).glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as h:
            names.update(h.keys())
    return names


def _logits(path: str, ids: list[int]) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_every_arch_loads_in_transformers(arch_path: tuple[str, str]) -> None:
    arch, path = arch_path
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == EXPECTED_CLASS[arch]
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.config.vocab_size == len(tok) == 1000
    assert model.dtype == torch.float32
    ids = tok("The quick brown fox")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()


def test_config_dims_and_family_specifics(arch_path: tuple[str, str]) -> None:
    arch, path = arch_path
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.architectures == [EXPECTED_CLASS[arch]]
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (64, 128, 2)
    if arch.startswith("deepseek"):  # latent attention: every head sees all kv, head_dim = rope part
        assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 4, 8)
    else:
        assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (4, 2, 16)
    assert cfg.max_position_embeddings == 1024
    names = _tensor_names(path)
    tied = arch in ("qwen2", "gemma2")
    assert cfg.tie_word_embeddings is tied
    assert ("lm_head.weight" in names) is not tied
    assert ("model.layers.0.self_attn.q_proj.bias" in names) is (arch in QWEN_ATTENTION_BIAS)
    assert ("model.layers.0.self_attn.q_norm.weight" in names) is (arch in QK_NORM)
    raw = json.loads(Path(path, "config.json").read_text())
    assert raw["rope_theta"] == (1e6 if arch == "mixtral" else 10000.0)  # each family's default
    assert raw["torch_dtype"] == "float32"
    if arch == "gemma2":
        assert cfg.sliding_window == 8 and cfg.query_pre_attn_scalar == 16
        assert cfg.layer_types == ["sliding_attention", "full_attention"]
        assert (cfg.attn_logit_softcapping, cfg.final_logit_softcapping) == (50.0, 30.0)
        assert cfg.hidden_activation == "gelu_pytorch_tanh"


def test_tied_weights_are_shared_after_loading(qwen2_path: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen2_path)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_sharded_checkpoint_matches_single_file(arch: str, tmp_path: Path) -> None:
    sharded = make_tiny_checkpoint(arch, str(tmp_path / "sharded"), seed=3, shards=3)
    index = json.loads(Path(sharded, "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in Path(sharded).glob("*.safetensors"))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert sorted(set(index["weight_map"].values())) == files
    assert set(index["weight_map"]) == _tensor_names(sharded)
    for name, fname in index["weight_map"].items():
        with safe_open(str(Path(sharded, fname)), framework="pt") as h:
            assert name in h.keys()
    total = 0
    for f in files:
        with safe_open(str(Path(sharded, f)), framework="pt") as h:
            total += sum(h.get_tensor(k).numel() * 4 for k in h.keys())
    assert index["metadata"]["total_size"] == total
    single = make_tiny_checkpoint(arch, str(tmp_path / "single"), seed=3)
    ids = [5, 17, 300, 42, 9]
    assert torch.equal(_logits(sharded, ids), _logits(single, ids))


def test_same_seed_gives_identical_bytes_across_processes(tmp_path: Path) -> None:
    in_process = make_tiny_checkpoint("qwen3", str(tmp_path / "a"), seed=7)
    cli = [sys.executable, "-m", "sglang.testing.tiny_model", "--arch", "qwen3",
           "--out", str(tmp_path / "b"), "--seed", "7"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cli, check=True, capture_output=True, cwd=Path(__file__).parents[2], env=env)
    assert _dir_hashes(in_process) == _dir_hashes(str(tmp_path / "b"))
    other = make_tiny_checkpoint("qwen3", str(tmp_path / "c"), seed=8)
    differ = {k for k, v in _dir_hashes(other).items() if v != _dir_hashes(in_process)[k]}
    assert differ == {"model.safetensors"}


def test_building_does_not_disturb_global_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tiny_checkpoint("llama", str(tmp_path), seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("text", ["Hello, world! 42 {\"a\": [1, 2]}", "  spaced\tout\n",
                                  "café naïve 日本語 😀 Ελληνικά", "unseen: ðŋœ ☃ 𝔘"])
def test_tokenizer_round_trips(arch_path: tuple[str, str], text: str) -> None:
    arch, path = arch_path
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(text)["input_ids"]
    has_bos = _tok_family(arch) not in ("qwen2", "qwen3")
    assert (ids[0] == tok.bos_token_id) is has_bos
    assert ids.count(tok.bos_token_id) == int(has_bos)  # BOS once, never doubled
    assert all(0 <= i < len(tok) for i in ids)
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_transformers_and_tokenizer_json_agree(arch_path: tuple[str, str]) -> None:
    # transformers 5 rebuilds the pipeline for some model types (qwen2); ids must not change.
    path = arch_path[1]
    text = "It's  a\n\n test of 1234567, don't <|im_start|>x café 日本語 😀 [INST]<eos>"
    raw = Tokenizer.from_file(str(Path(path, "tokenizer.json")))
    assert AutoTokenizer.from_pretrained(path)(text)["input_ids"] == raw.encode(text).ids


def test_chat_template_and_stop_tokens(arch_path: tuple[str, str]) -> None:
    arch, path = arch_path
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text == EXPECTED_CHAT[_tok_family(arch)]
    without = tok.apply_chat_template(CHAT[1:2], tokenize=False, add_generation_prompt=False)
    assert "Hi" in without and "Be brief." not in without
    ids = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_dict=False)
    assert tok.decode(ids) == text  # special tokens are atomic, no BOS added twice
    gen = json.loads(Path(path, "generation_config.json").read_text())
    stops = STOP_TOKENS[_tok_family(arch)]
    expected_eos = tok.convert_tokens_to_ids(stops)
    assert gen["eos_token_id"] == (expected_eos if len(stops) > 1 else expected_eos[0])
    assert tok.eos_token == ("<eos>" if arch == "gemma2" else stops[0])
    assert tok.pad_token_id is not None


def _greedy_stats(path: str) -> tuple[float, int, int, int]:
    """(fraction of steps with top-2 gap > 1e-3, distinct outputs, distinct tokens, early EOS)."""
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    rng = random.Random(1234)
    gaps, outputs, early = [], [], 0
    for _ in range(8):
        ids = torch.tensor([[rng.randrange(0, 990) for _ in range(rng.randint(5, 40))]])
        out: list[int] = []
        with torch.no_grad():
            for _ in range(16):
                logits = model(ids).logits[0, -1]
                top2 = torch.topk(logits, 2).values
                gaps.append(float(top2[0] - top2[1]))
                nxt = int(torch.argmax(logits))
                out.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        outputs.append(tuple(out))
        early += any(t in stops for t in out[:4])
    frac = sum(g > 1e-3 for g in gaps) / len(gaps)
    return frac, len(set(outputs)), len({t for o in outputs for t in o}), early


def test_greedy_decisions_are_clear_and_prompt_dependent(arch_path: tuple[str, str]) -> None:
    frac, distinct_outputs, distinct_tokens, early_eos = _greedy_stats(arch_path[1])
    assert frac >= 0.99, f"only {frac:.3f} of greedy steps have a top-2 gap > 1e-3"
    assert distinct_outputs >= 7 and distinct_tokens >= 32
    assert early_eos < 2


def test_config_overrides_keep_dims_consistent(tmp_path: Path) -> None:
    path = make_tiny_checkpoint("gemma2", str(tmp_path), num_hidden_layers=3, hidden_size=128,
                                vocab_size=1024)
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert cfg.head_dim == 32 == cfg.query_pre_attn_scalar and cfg.vocab_size == 1024
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and model.model.embed_tokens.weight.shape == (1024, 128)


def test_bad_arguments_say_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        make_tiny_checkpoint("gpt2", str(tmp_path))
    with pytest.raises(ValueError, match="shards=999"):
        make_tiny_checkpoint("llama", str(tmp_path), shards=999)
    with pytest.raises(ValueError, match="use a value >= 1000"):
        make_tiny_checkpoint("llama", str(tmp_path), vocab_size=10)


def test_fixture_cache_is_stable_and_race_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with ThreadPoolExecutor(max_workers=3) as pool:
        paths = list(pool.map(lambda _: tiny_model_dir("qwen2", num_hidden_layers=1), range(3)))
    assert len(set(paths)) == 1 and Path(paths[0]).parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [Path(paths[0]).name]  # no staging leftovers
    assert AutoConfig.from_pretrained(paths[0]).num_hidden_layers == 1
    assert tiny_model_dir("qwen2", num_hidden_layers=2) != paths[0]


@pytest.mark.parametrize("name", SUPPORTED_SHAPES)
def test_shape_configs_load_with_full_vocab(name: str, shape_path) -> None:
    path = shape_path(name)
    cfg = AutoConfig.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert not list(Path(path).glob("*.safetensors"))
    assert len(tok) == cfg.vocab_size
    ids = tok("Benchmarks send long prompts: 1234, café, 日本語, 😀. " * 4)["input_ids"]
    assert max(ids) < cfg.vocab_size
    dims = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.num_key_value_heads, cfg.intermediate_size, cfg.vocab_size)
    expected = {
        "llama-3-8b": (4096, 32, 32, 8, 14336, 128256),
        "llama-3.2-1b": (2048, 16, 32, 8, 8192, 128256),
        "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936),
        "mixtral-8x7b": (4096, 32, 32, 8, 14336, 32000),
        "qwen3-30b-a3b": (2048, 48, 32, 4, 6144, 151936),
        "deepseek-v2-lite": (2048, 27, 16, 16, 10944, 102400),
    }[name]
    assert dims == expected
    rope = cfg.rope_parameters
    if name == "llama-3.2-1b":
        assert rope["rope_type"] == "llama3" and rope["factor"] == 32.0 and cfg.tie_word_embeddings
        assert cfg.max_position_embeddings == 131072
    theta = {"mixtral-8x7b": 1e6, "deepseek-v2-lite": 10000.0}.get(name, 1e6 if name.startswith("qwen") else 500000.0)
    assert rope["rope_theta"] == theta
    if name == "deepseek-v2-lite":
        assert rope["rope_type"] == "yarn" and rope["mscale_all_dim"] == 0.707 and cfg.kv_lora_rank == 512
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_cli_writes_shape_and_applies_overrides(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--arch", "mistral", "--out", str(tmp_path / "m"), "--set", "num_hidden_layers=1",
          "--set", "sliding_window=16"])
    cfg = AutoConfig.from_pretrained(tmp_path / "m")
    assert (cfg.num_hidden_layers, cfg.sliding_window) == (1, 16)
    main(["--shape", "qwen2.5-0.5b", "--out", str(tmp_path / "s")])
    assert AutoConfig.from_pretrained(tmp_path / "s").hidden_size == 896
    assert capsys.readouterr().out.split() == [str(tmp_path / "m"), str(tmp_path / "s")]


def test_every_tiny_arch_is_a_registered_architecture() -> None:
    from sglang.runtime.models.registry import is_supported

    assert [name for name, cls in EXPECTED_CLASS.items() if not is_supported(cls)] == []


@pytest.mark.gpu
def test_gpu_marker_runs_only_with_cuda() -> None:
    assert torch.cuda.is_available()  # conftest skips this test on machines without CUDA
