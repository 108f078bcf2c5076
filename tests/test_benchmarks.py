"""The benchmarks are run by hand (`python -m benchmarks --only NAME`), not by `make test`: this
keeps each of them at least importable, so a rename in the package cannot leave one broken
until the day someone needs its figures."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(p.stem for p in (Path(__file__).parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("module", BENCHMARKS)
def test_every_benchmark_module_imports(module: str) -> None:
    importlib.import_module(f"benchmarks.{module}")
