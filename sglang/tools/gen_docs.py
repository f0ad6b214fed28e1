"""Regenerate the reference pages that come from the code.

    python -m sglang.tools.gen_docs            # rewrite docs/server_arguments.md, docs/sampling_params.md
    python -m sglang.tools.gen_docs --check    # exit 1 naming the pages that differ from the code

`docs` is the checkout's docs/ folder (next to the `sglang` package); `--docs-dir` picks another.
tests/docs/test_generated_docs.py runs the check, so a new flag or sampling parameter fails CI
until the pages are regenerated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REGENERATE = "python -m sglang.tools.gen_docs"
DEFAULT_DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _server_arguments() -> str:
    from sglang.runtime.server_args import ServerArgs
    from sglang.tools.server_args_page import render

    return render(ServerArgs)


def _sampling_params() -> str:
    from sglang.tools.sampling_params_page import render

    return render()


PAGES: Dict[str, Callable[[], str]] = {
    "server_arguments.md": _server_arguments,
    "sampling_params.md": _sampling_params,
}


def render_all() -> Dict[str, str]:
    """File name -> the page's current text, generated in memory."""
    return {name: render() for name, render in PAGES.items()}


def stale_pages(docs_dir: Path) -> List[str]:
    """Pages whose file differs from what the code generates now (missing ones included)."""
    stale = []
    for name, text in render_all().items():
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    parser.add_argument("--docs-dir", type=Path, default=DEFAULT_DOCS_DIR, help="the docs folder")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages(args.docs_dir)
        for name in stale:
            print(f"{args.docs_dir / name} is stale; run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for name, text in render_all().items():
        (args.docs_dir / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.docs_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
