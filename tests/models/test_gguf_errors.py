"""GGUF paths and files that cannot be served get a clear error naming the problem: unsupported
architecture / tensor type / tensor, split and corrupt files, and the --model-path /
--load-format rules (a .gguf file, or a directory holding exactly one with --load-format gguf)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from sglang.runtime.checkpoint_path import (
    ModelPathError,
    resolve_checkpoint_dir,
    resolve_tokenizer_dir,
    use_local_checkpoint,
)
from sglang.runtime.models.gguf.archs import select_arch
from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint
from sglang.runtime.models.gguf.weights import iterate_gguf_weights
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_gguf_path, tiny_model_dir
from sglang.testing.tiny_gguf import write_tiny_gguf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _minimal_gguf(path: str, arch: str, **metadata) -> str:
    """A GGUF with `metadata` (uint32 / str values) and one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    for key, value in metadata.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_architecture_is_named(tmp_path):
    path = _minimal_gguf(str(tmp_path / "phi.gguf"), "phi3")
    with pytest.raises(ValueError, match=r"GGUF architecture 'phi3'.*supported GGUF architectures: "
                                         r"gemma2, llama, qwen2, qwen3"):
        ModelConfig(path)


def test_mixture_of_experts_llama_is_refused(tmp_path):
    path = _minimal_gguf(str(tmp_path / "mixtral.gguf"), "llama", **{"llama.expert_count": 8})
    with pytest.raises(ValueError, match=r"mixture-of-experts 'llama' model \(8 experts"):
        ModelConfig(path)


def test_split_gguf_is_refused_with_the_merge_hint(tmp_path):
    path = _minimal_gguf(str(tmp_path / "model-00001-of-00002.gguf"), "llama", **{"split.count": 2})
    with pytest.raises(ValueError, match="split into 2 files.*--merge"):
        GGUFCheckpoint(path)


def test_corrupt_gguf_is_refused(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(ValueError, match="is not a readable GGUF file"):
        ModelConfig(str(path))


def test_tensor_type_gguf_cannot_dequantize_is_named_before_any_tensor_is_read(tmp_path):
    import gguf

    # Q8_1 is ggml's activation format: the gguf package has no dequantizer for it.
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
    blocks = np.zeros((64, 128 // block * size), dtype=np.uint8)
    path = write_tiny_gguf(tiny_model_dir("llama"), str(tmp_path / "q8_1.gguf"),
                           raw_tensors={"blk.0.ffn_down.weight": (blocks, "Q8_1")})
    mc = ModelConfig(path)
    weights = iterate_gguf_weights(mc.gguf, select_arch(mc.gguf), mc.hf_config, mc.dtype, progress=False)
    with pytest.raises(ValueError, match=r"cannot dequantize: Q8_1 \(1 tensors, e.g. blk.0.ffn_down.weight\)\. "
                                         r"Supported: F32, F16, .*Q4_K"):
        next(weights)  # the first tensor (fine on its own) is never produced
    with pytest.raises(ValueError, match="Q8_1"):
        load_model(mc)


def test_tensor_the_architecture_lacks_is_named(tmp_path):
    extra = {"blk.0.ffn_gate_exps.weight": (np.zeros((2, 64), dtype=np.float32), "F32")}
    path = write_tiny_gguf(tiny_model_dir("llama"), str(tmp_path / "extra.gguf"), raw_tensors=extra)
    with pytest.raises(ValueError, match=r"LlamaForCausalLM has no parameter for: blk.0.ffn_gate_exps.weight"):
        load_model(ModelConfig(path))


def test_dummy_load_format_takes_the_gguf_config():
    mc = ModelConfig(tiny_gguf_path("qwen3"), load_format="dummy")
    model = load_model(mc, "dummy")
    assert mc.architecture == "Qwen3ForCausalLM"
    assert model.model.embed_tokens.weight.shape == (mc.vocab_size, mc.hidden_size)


def test_load_format_must_fit_the_checkpoint():
    gguf_file = tiny_gguf_path("llama")
    with pytest.raises(ValueError, match=r"is a GGUF file but --load-format is 'safetensors'"):
        ModelConfig(gguf_file, load_format="safetensors")
    with pytest.raises(ValueError, match="does not fit .* which is a GGUF file"):
        load_model(ModelConfig(gguf_file), "pt")
    with pytest.raises(ValueError, match="does not fit .* which is not a GGUF checkpoint"):
        load_model(ModelConfig(tiny_model_dir("llama")), "gguf")


# ---------------------------------------------------------------- --model-path rules


def _dir_with(tmp_path, *names: str) -> str:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    for name in names:
        shutil.copy(tiny_gguf_path("llama"), directory / name)
    return str(directory)


def test_gguf_file_is_a_checkpoint():
    path = tiny_gguf_path("llama")
    assert resolve_checkpoint_dir(path) == path
    assert resolve_checkpoint_dir(path, load_format="gguf") == path
    assert resolve_tokenizer_dir(path) == path


def test_directory_of_one_gguf_with_load_format_gguf(tmp_path):
    directory = _dir_with(tmp_path, "only.gguf")
    file = os.path.join(directory, "only.gguf")
    assert resolve_checkpoint_dir(directory, load_format="gguf") == file
    assert ModelConfig(directory, load_format="gguf").gguf_path == file
    args = SimpleNamespace(model_path=directory, tokenizer_path=directory, revision=None, load_format="gguf",
                           skip_tokenizer_init=False)
    use_local_checkpoint(args)
    assert (args.model_path, args.tokenizer_path) == (file, file)  # the tokenizer comes from the file too
    with pytest.raises(ModelPathError, match=r"has no config.json but holds GGUF file\(s\): only.gguf; pass the "
                                             r".gguf file itself as --model-path"):
        resolve_checkpoint_dir(directory)  # load_format auto


def test_directory_with_several_or_no_gguf_files(tmp_path):
    directory = _dir_with(tmp_path, "a.gguf", "b.gguf")
    with pytest.raises(ModelPathError, match=r"holds 2 .gguf files \(a.gguf, b.gguf\), where --load-format gguf "
                                             r"needs exactly one"):
        resolve_checkpoint_dir(directory, load_format="gguf")
    with pytest.raises(ModelPathError, match="holds no .gguf file"):
        resolve_checkpoint_dir(tiny_model_dir("llama"), load_format="gguf")


def test_files_that_are_not_gguf_checkpoints(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelPathError, match=r"--model-path '.*fake.gguf' is named .gguf but is not a GGUF file"):
        resolve_checkpoint_dir(str(fake))
    with pytest.raises(ModelPathError, match=r"--tokenizer-path '.*fake.gguf' is named .gguf but is not"):
        resolve_tokenizer_dir(str(fake))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelPathError, match=r"is a file; give the checkpoint's directory or a .gguf file"):
        resolve_checkpoint_dir(str(other))
    with pytest.raises(ModelPathError, match=r"is a GGUF file but --load-format is 'pt'"):
        resolve_checkpoint_dir(tiny_gguf_path("llama"), load_format="pt")


def test_launch_server_refuses_a_bad_gguf_in_one_line(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"\x00" * 16)
    done = subprocess.run([sys.executable, "-m", "sglang.launch_server", "--model-path", str(fake)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "is not a GGUF file" in lines[0], done.stderr[-2000:]
