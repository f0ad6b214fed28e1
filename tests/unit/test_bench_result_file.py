"""Benchmark result headers: every record names its device, date, commit and command."""

from __future__ import annotations

import json

from sglang.benchmark.result_file import result_header, write_result


def test_header_fields_and_commit_override(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SGLANG_BENCH_COMMIT", "abc1234")
    header = result_header("benchmarks/x.py", "cpu", ["--batch", "4"])
    assert header["commit"] == "abc1234"
    assert header["command"] == "python benchmarks/x.py --batch 4"
    assert header["device"].startswith("cpu") and len(header["date"]) == 10
    out = tmp_path / "r.json"
    write_result({**header, "value": 1.5}, str(out))
    assert json.loads(out.read_text())["value"] == 1.5
