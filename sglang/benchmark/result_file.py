"""The header every benchmark result file carries (device, date, commit, command), and writing it.

`SGLANG_BENCH_COMMIT` overrides the commit read from git, for copies of the tree whose `.git` is
not the one the code came from (e.g. a working tree shipped to a remote GPU machine).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from typing import Optional, Sequence


def current_commit() -> str:
    if os.environ.get("SGLANG_BENCH_COMMIT"):
        return os.environ["SGLANG_BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name()
    return f"cpu ({os.cpu_count()} cores)"


def result_header(script: str, device: str, argv: Optional[Sequence[str]] = None) -> dict:
    args = sys.argv[1:] if argv is None else argv
    return {"device": device_name(device), "date": datetime.date.today().isoformat(), "commit": current_commit(),
            "command": " ".join(["python", script, *args])}


def write_result(record: dict, path: Optional[str]) -> None:
    """Print the record; also write it to `path` when one is given."""
    print(json.dumps(record, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(record, f, indent=2)
