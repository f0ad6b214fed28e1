"""The real-shape VLM config (dummy-weight benchmarks) and the image QA benchmark script."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.testing.fixtures import tiny_vlm_dir
from sglang.testing.shapes_vlm import write_vlm_shape


def test_qwen2_5_vl_7b_shape_gives_256_tokens_for_a_448_image(tmp_path) -> None:
    out = write_vlm_shape("qwen2.5-vl-7b", str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["text_config"]["hidden_size"] == 3584 and config["vision_config"]["depth"] == 32
    proc = load_multimodal_processor(out, "Qwen2_5_VLForConditionalGeneration")
    item = proc.process(proc.image_text + "describe", [Image.new("RGB", (448, 448))]).mm_inputs.items[0]
    assert item.length == 256 and tuple(item.features["pixel_values"].shape) == (1024, 1176)


def test_image_qa_benchmark_runs_and_records(tmp_path) -> None:
    result = tmp_path / "r.json"
    cmd = [sys.executable, "benchmarks/multimodal/bench_image_qa.py", "--model-path", tiny_vlm_dir("llava"),
           "--device", "cpu", "--num-prompts", "3", "--image-size", "40", "--output-len", "3",
           "--image-mode", "same", "--result-file", str(result)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    record = json.loads(result.read_text())
    assert record["requests"] == 3 and record["requests_per_s"] > 0 and record["ttft_mean_s"] > 0
    assert record["cached_tokens_mean"] > 0  # the same picture three times: a cache hit
    assert {"device", "date", "commit", "command"} <= record.keys()
