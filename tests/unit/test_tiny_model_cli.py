"""`python -m sglang.testing.tiny_model --help`: clean output that names every choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sglang.testing.shapes import SHAPES
from sglang.testing.tiny_model import ARCHES

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_help(*python_flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *python_flags, "-m", "sglang.testing.tiny_model", "--help"],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)


def test_help_lists_shapes_and_arches_without_warnings():
    out = _run_help("-W", "always")
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr
    help_text = " ".join(out.stdout.split())  # argparse wraps long choice lists
    for name in [*SHAPES, *ARCHES]:
        assert name in help_text, name


def test_importing_the_package_leaves_the_cli_module_unimported():
    """What made runpy warn: `import sglang.testing` imported tiny_model before running it."""
    code = "import sys, sglang.testing; print('sglang.testing.tiny_model' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
