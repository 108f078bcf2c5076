"""The scripts behind ``make``: what a technician or developer sees when running them again."""

from __future__ import annotations

import subprocess

from hypothesis import settings

from tests.conftest import REPO


def test_an_installed_venv_is_not_reinstalled_and_prints_nothing() -> None:
    """Every ``make`` used to reinstall the package and print setuptools' editable banner."""
    command = ["bash", "-c", "source scripts/venv.sh '.[test]'"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=600)  # as make test did
    again = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
    assert again.stdout == ""
    assert again.stderr == ""


def test_hypothesis_examples_have_no_wall_clock_deadline() -> None:
    """A 200 ms deadline fails now and then on a busy 2-core box; examples are bounded by count."""
    assert settings().deadline is None
