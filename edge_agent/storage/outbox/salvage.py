"""Unsent messages recovered from a database quarantined at start (an unreadable file).

HQ deduplicates on ``event_id``, so a salvaged message that had been sent already does no harm;
one left behind would be a loss.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

from edge_agent.storage.database import Database
from edge_agent.storage.outbox.rows import INSERT

_LOGGER = logging.getLogger(__name__)
# Unsent rows salvaged from a quarantined database are read in chunks: a bad page costs one chunk.
SALVAGE_CHUNK = 200
_COLUMNS = "SELECT topic, payload, priority, retain, created, expires FROM outbox "
# One row with every column bound.
_INSERT_ROW = INSERT + "(?,?,?,?,?,?)"


def salvage(database: Database, quarantined: Path) -> int:
    """Copy the unsent messages still readable in ``quarantined`` into ``database``'s outbox;
    return how many."""
    rows = _readable_rows(quarantined)
    if rows is None:
        return 0
    if rows:
        with database.transaction() as conn:
            conn.executemany(_INSERT_ROW, rows)
    _LOGGER.error("salvaged %d unsent messages from the quarantined %s", len(rows), quarantined.name)
    return len(rows)


def _readable_rows(quarantined: Path) -> list[tuple[Any, ...]] | None:
    """Every outbox row that can still be read, in order (None: the file cannot be opened)."""
    try:
        source = sqlite3.connect(f"file:{quarantined}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        _LOGGER.error("no unsent messages salvaged from %s: %s", quarantined.name, exc)
        return None
    rows: list[tuple[Any, ...]] = []
    try:
        try:
            last = source.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            last = None  # the table's end is unreadable: one pass, whatever it yields
        if last is None:
            with contextlib.suppress(sqlite3.DatabaseError):
                rows = source.execute(_COLUMNS + "ORDER BY id").fetchall()
        else:
            for start in range(0, last + 1, SALVAGE_CHUNK):
                with contextlib.suppress(sqlite3.DatabaseError):  # one unreadable stretch, not all
                    rows += source.execute(
                        _COLUMNS + "WHERE id >= ? AND id < ? ORDER BY id", (start, start + SALVAGE_CHUNK)
                    ).fetchall()
    finally:
        source.close()
    return rows
