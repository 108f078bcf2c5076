"""The agent's one SQLite file: opening it safely and running transactions across threads.

WAL with ``synchronous=FULL``: a commit that returned survives a power cut. The main connection
is shared by the pipeline and whoever reads figures, under one lock, and keeps a state change
and the events it causes in one transaction.

The sender thread has a second connection (``sender``), with ``synchronous=NORMAL`` and its
own lock, for what it does many times a second: reading due rows and deleting acknowledged
ones. Losing a delete to a power cut only means the row is sent again (HQ deduplicates on
event_id), and the next FULL commit on the main connection syncs the WAL frames before it
anyway. Measured on the store box: with both on one FULL connection, a click-and-collect
notification waited behind the sender's fsyncs and checkpoints (p99 523 ms from sighting to
HQ); split, p99 falls to tens of milliseconds (benchmarks/notification_latency.py). The sender
connection also runs the WAL checkpoints, off the main loop's path.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

MAIN_CHECKPOINT_PAGES = 16_384  # 64 MiB of WAL at the default page size


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
        # Deleted content is overwritten, not left in free pages: an erased customer's identity
        # key must not survive in the file (checkpoint() then clears the WAL's copies).
        conn.execute("PRAGMA secure_delete=ON")
        # Checkpoints belong to the sender connection; the main one steps in only if the WAL
        # grows large while nothing is acknowledged (the broker away for long).
        conn.execute(f"PRAGMA wal_autocheckpoint={MAIN_CHECKPOINT_PAGES}")
        self.db = sqlite_utils.Database(conn)
        self.lock = threading.RLock()
        self._depth = 0
        sender = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        sender.execute("PRAGMA synchronous=NORMAL")
        sender.execute("PRAGMA secure_delete=ON")
        self.sender = sender
        self.sender_lock = threading.Lock()
        # Both connections take this before they write. SQLite would serialise them anyway, but
        # its busy handler waits in sleeps of up to tens of milliseconds; a lock wakes the
        # waiter the moment the other commits.
        self.write_lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work; nested calls join the outer transaction."""
        with self.lock:
            conn = self.db.conn
            outer = self._depth == 0
            if outer:
                self.write_lock.acquire()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self.write_lock.release()
                    raise
            self._depth += 1
            try:
                yield conn
            except BaseException:
                self._depth -= 1
                if outer:
                    try:
                        conn.execute("ROLLBACK")
                    finally:
                        self.write_lock.release()
                raise
            self._depth -= 1
            if outer:
                try:
                    conn.execute("COMMIT")
                finally:
                    self.write_lock.release()

    @contextlib.contextmanager
    def sender_transaction(self) -> Iterator[sqlite3.Connection]:
        """A write on the sender's connection (not durable on its own: see the module doc)."""
        with self.sender_lock, self.write_lock:
            conn = self.sender
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after an erasure)."""
        with self.lock, self.write_lock:
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self.sender_lock:
            self.sender.close()
        with self.lock:
            self.db.conn.close()
