"""The layers hold: imports point from tools and daemon to adapters to core, never back, and
nothing beneath the core (at any depth) does I/O, starts threads or reads the clock."""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_agent"

# What each layer may import from the package, besides itself (DESIGN §2, README "How it works").
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "storage": {"core"},
    "adapters": {"core", "storage"},
    "daemon": {"core", "storage", "adapters"},
    "hq": {"core"},
    "tools": {"core", "storage", "adapters", "daemon", "hq"},
    "cli": {"core", "storage", "adapters", "daemon", "hq", "tools"},
}
# Standard-library modules that mean I/O, concurrency, processes or the clock.
FORBIDDEN_IN_CORE = {
    "socket", "ssl", "select", "selectors", "sqlite3", "threading", "_thread", "multiprocessing",
    "concurrent", "asyncio", "subprocess", "ctypes", "os", "io", "shutil", "tempfile", "time", "signal",
    "glob", "urllib", "http", "importlib", "mmap", "fcntl",
}  # fmt: skip
# Libraries the core may use: validation at the edges and AES, both pure computation.
THIRD_PARTY_IN_CORE = {"pydantic", "pydantic_core", "cryptography"}
# Calls that read files or the wall clock, whatever module they come from.
FORBIDDEN_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "now", "utcnow", "today"}


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # edge_agent.core.frames
    path: Path
    imports: frozenset[str]
    calls: frozenset[str]


def _modules(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a copy of the ``edge_agent`` folder), with what it imports
    (at any level of the file, not only the top) and the names it calls."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports, calls = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imports.add(node.module)
                imports.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Call):
                func = node.func
                calls.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
        found[name] = Module(name, path, frozenset(imports), frozenset(calls))
    return found


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _own_imports(module: Module, modules: dict[str, Module]) -> Iterator[str]:
    """The package's modules that ``module`` imports (``from a.b import c`` may name module c)."""
    for imported in module.imports:
        if imported in modules:
            yield imported


def core_violations(root: Path) -> list[str]:
    """What any core module reaches, through any chain of the package's own imports, that the
    core must not: a forbidden standard module, an unlisted library, a module of another layer,
    a file or clock call. Each violation names the chain that leads to it."""
    modules = _modules(root)
    problems = []
    for start in sorted(n for n in modules if _layer(n) == "core"):
        seen = {start: [start]}
        todo = [start]
        while todo:
            current = modules[todo.pop()]
            chain = " -> ".join(seen[current.name])
            for imported in sorted(current.imports):
                top = imported.split(".")[0]
                if top == "edge_agent":
                    if imported not in modules:
                        continue
                    if _layer(imported) not in ("core", None):
                        problems.append(f"{chain} imports {imported}")
                    elif imported not in seen:
                        seen[imported] = [*seen[current.name], imported]
                        todo.append(imported)
                elif top in FORBIDDEN_IN_CORE:
                    problems.append(f"{chain} imports {imported}")
                elif (
                    top not in sys.stdlib_module_names
                    and top not in THIRD_PARTY_IN_CORE
                    and top != "__future__"
                ):
                    problems.append(f"{chain} imports the library {imported}")
            for call in sorted(current.calls & FORBIDDEN_CALLS):
                problems.append(f"{chain} calls {call}()")
    return sorted(set(problems))


def layer_violations(root: Path) -> list[str]:
    modules = _modules(root)
    problems = []
    for module in modules.values():
        layer = _layer(module.name)
        if layer is None:
            continue
        for imported in _own_imports(module, modules):
            other = _layer(imported)
            if other is not None and other != layer and other not in LAYERS[layer]:
                problems.append(f"{module.name} ({layer}) imports {imported} ({other})")
    return sorted(set(problems))


def test_nothing_beneath_the_core_does_io_threads_or_clocks() -> None:
    assert core_violations(PACKAGE) == []


def test_imports_point_down_the_layers_never_back() -> None:
    assert layer_violations(PACKAGE) == []


def test_every_module_belongs_to_a_layer() -> None:
    loose = [
        n for n in _modules(PACKAGE) if _layer(n) is None and n not in ("edge_agent", "edge_agent.__main__")
    ]
    assert loose == []


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("import sqlite3", "imports sqlite3"),
        ("import socket", "imports socket"),
        ("from threading import Thread", "imports threading"),
        ("import asyncio", "imports asyncio"),
        ("import subprocess", "imports subprocess"),
        ("import ctypes.util", "imports ctypes.util"),
        ("import time", "imports time"),
        ("def f(p):\n    return p.read_text()", "calls read_text()"),
        ("def f():\n    return open('x')", "calls open()"),
        ("import datetime\ndef f():\n    return datetime.datetime.now()", "calls now()"),
        ("import paho.mqtt.client", "imports the library paho.mqtt.client"),
        ("from edge_agent.storage import database", "imports edge_agent.storage"),
    ],
)
def test_a_forbidden_import_planted_two_modules_deep_is_found(
    tmp_path: Path, planted: str, expected: str
) -> None:
    """The check follows imports: frames -> _planted_a -> _planted_b, and _planted_b is bad."""
    root = tmp_path / "edge_agent"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "core" / "_planted_b.py").write_text(planted + "\n")
    (root / "core" / "_planted_a.py").write_text("from edge_agent.core import _planted_b\n")
    frames = root / "core" / "frames.py"
    frames.write_text(frames.read_text() + "\nfrom edge_agent.core import _planted_a  # noqa\n")
    found = core_violations(root)
    chain = "edge_agent.core.frames -> edge_agent.core._planted_a -> edge_agent.core._planted_b"
    assert any(v.startswith(chain) and v.endswith(expected) for v in found), found


def test_an_import_that_points_back_up_is_found(tmp_path: Path) -> None:
    root = tmp_path / "edge_agent"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    outbox = root / "storage" / "database.py"
    outbox.write_text(outbox.read_text() + "\nfrom edge_agent.adapters import link  # noqa\n")
    assert "edge_agent.storage.database (storage) imports edge_agent.adapters.link (adapters)" in (
        layer_violations(root)
    )
