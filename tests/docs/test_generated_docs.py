"""docs/server_arguments.md and docs/sampling_params.md are what the code generates now.

Regenerated in memory and compared; a new or changed ServerArgs field or sampling parameter fails
here until `python -m sglang.tools.gen_docs` is run (the message says so)."""

from __future__ import annotations

import dataclasses

import pytest

from sglang.tools import gen_docs
from sglang.tools.markdown import table
from sglang.tools.sampling_params_page import ERROR_EXAMPLES, check_meanings, example_error
from sglang.tools.server_args_page import UNGROUPED, field_groups
from tests.docs.snippet_runner import DOCS_DIR


@pytest.mark.parametrize("name", sorted(gen_docs.PAGES))
def test_generated_page_is_current(name: str) -> None:
    expected = gen_docs.PAGES[name]()
    actual = (DOCS_DIR / name).read_text(encoding="utf-8")
    assert actual == expected, f"docs/{name} is stale: run `{gen_docs.REGENERATE}` and commit the result"


def test_check_mode_reports_stale_pages(tmp_path) -> None:
    assert gen_docs.main(["--docs-dir", str(tmp_path)]) == 0
    assert gen_docs.stale_pages(tmp_path) == []
    (tmp_path / "sampling_params.md").write_text("old", encoding="utf-8")
    assert gen_docs.main(["--check", "--docs-dir", str(tmp_path)]) == 1
    assert gen_docs.stale_pages(tmp_path) == ["sampling_params.md"]


def test_every_server_flag_is_documented_once() -> None:
    from sglang.runtime.server_args import ServerArgs

    grouped = [f.name for _, fields in field_groups(ServerArgs) for f in fields]
    assert sorted(grouped) == sorted(f.name for f in dataclasses.fields(ServerArgs))
    page = (DOCS_DIR / "server_arguments.md").read_text(encoding="utf-8")
    for name in grouped:
        assert page.count(f"| `--{name.replace('_', '-')}` |") == 1, name


def test_server_args_are_grouped_by_their_source_comments() -> None:
    @dataclasses.dataclass
    class Example:
        # First group
        a: int = 1
        b: str = "x"

        # Second group
        c: bool = False

    groups = [(title, [f.name for f in fields]) for title, fields in field_groups(Example)]
    assert groups == [("First group", ["a", "b"]), ("Second group", ["c"])]
    assert UNGROUPED not in dict(groups)


def test_sampling_meanings_cover_exactly_the_parameters() -> None:
    from sglang.runtime.sampling.sampling_params import SamplingParams

    check_meanings(SamplingParams.param_names())
    with pytest.raises(ValueError, match="describe \\['brand_new'\\]"):
        check_meanings([*SamplingParams.param_names(), "brand_new"])


def test_error_examples_are_refused_by_the_real_validation() -> None:
    for name, example in ERROR_EXAMPLES.items():
        assert name in example_error(example), (name, example_error(example))
    with pytest.raises(ValueError, match="is accepted by SamplingParams now"):
        example_error({"temperature": 0.5})


def test_table_cells_escape_pipes() -> None:
    assert table(("a",), [("x | y",)]).splitlines()[-1] == "| x \\| y |"
