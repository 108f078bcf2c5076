"""The agent's database opened read-only beside the running daemon, for the commands that look
into it (``edge-agent status``, ``edge-agent journey``): WAL lets a reader in while the daemon
writes, and a reader must never create the file or take a write lock."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


class DatabaseUnavailable(Exception):
    """There is no agent database to read (yet), or it is not one of ours."""


@contextlib.contextmanager
def open_read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``db_path``, closed on exit, or DatabaseUnavailable."""
    if not db_path.exists():
        raise DatabaseUnavailable(f"no agent database at {db_path}: has the agent run yet?")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            yield conn
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(f"cannot read {db_path}: {exc}") from exc
