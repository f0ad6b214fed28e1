"""The benchmark CLIs run end to end on the CPU with tiny sizes and report consistent numbers."""

from __future__ import annotations

import json

from sglang import bench_offline_throughput, bench_one_batch
from sglang.testing.fixtures import tiny_model_dir


def test_bench_one_batch_reports_prefill_and_decode(tmp_path):
    out = tmp_path / "one.jsonl"
    records = bench_one_batch.main(["--model-path", tiny_model_dir("llama"), "--device", "cpu", "--batch-size", "2",
                                    "--input-len", "16", "--output-len", "4", "--result-file", str(out)])
    (rec,) = records
    assert rec["batch_size"] == 2 and rec["decode_steps"] == 3
    assert rec["prefill_latency"] > 0 and rec["median_decode_latency"] > 0
    assert json.loads(out.read_text().splitlines()[0])["input_len"] == 16


def test_bench_offline_throughput_counts_every_token(tmp_path):
    report = bench_offline_throughput.main([
        "--model-path", tiny_model_dir("llama"), "--device", "cpu", "--num-prompts", "6",
        "--random-input-len", "12", "--random-output-len", "5", "--random-range-ratio", "1",
        "--compare-transformers", "--hf-batch-size", "3", "--result-file", str(tmp_path / "off.jsonl")])
    assert report["sglang"]["output_tokens"] == 6 * 5
    assert report["transformers"]["batch_3"]["output_tokens"] == 6 * 5
    assert report["transformers"]["batch_3"]["ratio_sglang_over_hf"] > 0
