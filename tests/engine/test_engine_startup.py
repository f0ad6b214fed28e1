"""The offline Engine's process lifecycle: a script without a main guard gets one line saying
what to change (not multiprocessing's tracebacks), and the ipc directory is removed both after a
normal shutdown and after a failed start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sglang.testing.fixtures import tiny_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def _ipc_dirs(tmp_path: Path) -> list:
    return sorted(p.name for p in tmp_path.glob("sglang-ipc-*"))


def test_engine_without_main_guard_says_what_to_do(tmp_path):
    done = _run_script(tmp_path, f"""
        import sglang

        engine = sglang.Engine(model_path={tiny_model_dir("llama")!r}, device="cpu")
        print(engine.generate("Hello", {{"max_new_tokens": 2}})["text"])
        engine.shutdown()
    """)
    assert done.returncode != 0
    err = done.stderr
    # Only the parent's own error: no traceback from inside a child's bootstrap.
    assert err.count("Traceback") == 1 and "multiprocessing/spawn.py" not in err, err[-4000:]
    assert "failed to start: None" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: ") and 'if __name__ == "__main__":' in last, last
    assert err.count('if __name__ == "__main__":') == 1  # said once, by the parent, not by each child
    assert _ipc_dirs(tmp_path) == []


def test_engine_with_main_guard_runs_and_cleans_up(tmp_path):
    done = _run_script(tmp_path, f"""
        import sglang

        if __name__ == "__main__":
            with sglang.Engine(model_path={tiny_model_dir("llama")!r}, device="cpu") as engine:
                out = engine.generate("Hello", {{"max_new_tokens": 2}})
                print("tokens", out["meta_info"]["completion_tokens"])
    """)
    assert done.returncode == 0 and "tokens 2" in done.stdout, done.stderr[-4000:]
    assert _ipc_dirs(tmp_path) == []
