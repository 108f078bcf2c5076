"""The agent's one SQLite file: opening it safely and running transactions across threads.

WAL with ``synchronous=FULL``: a commit that returned survives a power cut. One connection is
shared by the pipeline thread and the sender thread under one lock; SQLite serialises writers
anyway, and one connection keeps a state change and the events it causes in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Identity keys live here: owner-only from the first byte written.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so no library commits for us.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work; nested calls join the outer transaction."""
        with self.lock:
            conn = self.db.conn
            outer = self._depth == 0
            if outer:
                conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield conn
            except BaseException:
                self._depth -= 1
                if outer:
                    conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()
