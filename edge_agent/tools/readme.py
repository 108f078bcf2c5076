"""The README's example output, made from a real run of the demo and checked against one.

``python -m edge_agent.tools.readme`` (``make readme``) runs ``edge-agent demo`` as ``make demo``
does and writes its output into the README between ``<!-- NAME -->`` and ``<!-- /NAME -->``
markers: the summary (``demo-summary``) and the example journey (``demo-journey``).
``tests/test_readme.py`` runs the demo again and compares, so a change that moves a figure fails
until the README is regenerated. What differs from run to run by nature (the embedded broker's
port, elapsed times, random visit ids) is left out of the comparison, nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
# Wide enough that rich wraps no line of the summary; the journey lines are never wrapped.
COLUMNS = 120
_VOLATILE = (
    (re.compile(r"\d+:\d\d:\d\d\b"), "H:MM:SS"),  # progress bars' elapsed time
    (re.compile(r"done in [\d.]+ s"), "done in N s"),
    (re.compile(r"visit …[0-9A-Z]{6}"), "visit …ID"),  # the tail of a random ULID
    (re.compile(r"\b([A-Z]+)-[0-9A-F]{8}\b"), r"\1-CODE"),  # a coupon code: random, so unguessable
)


def run_demo(*args: str) -> str:
    """The demo's standard output, as a technician sees it after ``make demo``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": str(COLUMNS)}
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", *args],
        check=True, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    return result.stdout


def blocks(output: str) -> dict[str, str]:
    """The README's two blocks from the demo's output."""
    lines = [line.rstrip() for line in output.splitlines()]
    summary_start = next(i for i, line in enumerate(lines) if line.startswith("HQ sent "))
    journey_title = next(i for i, line in enumerate(lines) if line.startswith("example journey"))
    done = next(i for i, line in enumerate(lines) if line.startswith("done in "))
    return {
        "demo-summary": "\n".join([*lines[summary_start:journey_title], lines[done]]),
        "demo-journey": "\n".join(lines[journey_title + 1 : done]),
    }


def written(readme: str) -> dict[str, str]:
    """The blocks as the README holds them."""
    found = {}
    for name in ("demo-summary", "demo-journey"):
        match = re.search(rf"<!-- {name} -->\n```\n(.*?)\n```\n<!-- /{name} -->", readme, re.S)
        if match is None:
            raise ValueError(f"README.md has no <!-- {name} --> block")
        found[name] = match.group(1)
    return found


def replace(readme: str, new: dict[str, str]) -> str:
    for name, text in new.items():
        pattern = re.compile(rf"(<!-- {name} -->\n```\n).*?(\n```\n<!-- /{name} -->)", re.S)
        readme, count = pattern.subn(_keeping_markers(text), readme)
        if count != 1:
            raise ValueError(f"README.md has no <!-- {name} --> block")
    return readme


def _keeping_markers(text: str) -> Callable[[re.Match[str]], str]:
    return lambda match: match.group(1) + text + match.group(2)


def comparable(text: str) -> str:
    for pattern, stand_in in _VOLATILE:
        text = pattern.sub(stand_in, text)
    return text


def main() -> int:
    README.write_text(replace(README.read_text(encoding="utf-8"), blocks(run_demo())), encoding="utf-8")
    print(f"wrote the demo's output into {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
