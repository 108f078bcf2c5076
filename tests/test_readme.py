"""The README's example output is what the demo prints: a test runs the demo and compares."""

from __future__ import annotations

import pytest

from edge_agent.tools import readme


@pytest.fixture(scope="module")
def demo_output() -> str:
    return readme.run_demo()


def test_the_readme_demo_blocks_are_what_a_run_of_the_demo_prints(demo_output: str) -> None:
    made = readme.blocks(demo_output)
    held = readme.written(readme.README.read_text(encoding="utf-8"))
    for name in ("demo-summary", "demo-journey"):
        assert readme.comparable(held[name]) == readme.comparable(made[name]), (
            f"README.md's {name} block differs from a run of the demo: run `make readme`"
        )


def test_the_comparison_ignores_only_what_changes_by_nature() -> None:
    assert readme.comparable("0:00:04 done in 5.9 s visit …65Z5NA") == "H:MM:SS done in N s visit …ID"
    assert readme.comparable("│ sightings replayed │ 272899 │") == "│ sightings replayed │ 272899 │"
    assert (
        readme.comparable("Your code VISIT-962288D0, order ORD-1002")
        == "Your code VISIT-CODE, order ORD-1002"
    )


def test_a_readme_without_the_block_is_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="demo-summary"):
        readme.written("no blocks here")
