"""The core stays pure: no sockets, files, threads, databases or wall clock in its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = [
    "frames", "identity", "presence", "journey", "events", "ids", "core", "sighting", "downlinks", "topics",
    "beacons", "throttle", "remote", "scanview", "liveness",
]  # fmt: skip
FORBIDDEN = {
    "socket",
    "sqlite3",
    "sqlite_utils",
    "asyncio",
    "threading",
    "time",
    "paho",
    "bleak",
    "apscheduler",
    "subprocess",
    "os",
    "edge_agent.storage",
    "edge_agent.outbox",
    "edge_agent.link",
}
PACKAGE = Path(__file__).resolve().parents[1] / "edge_agent"


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {name for name in imported if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN}
    assert not bad, f"edge_agent.{module} imports {sorted(bad)}"
