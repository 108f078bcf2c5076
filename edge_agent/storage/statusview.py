"""``edge-agent status``: what a technician needs to know about the local agent, read-only.

Queue and registry figures are read live from the daemon's SQLite file (WAL lets a reader in
beside the running daemon); link state, last sync, scanners and missing beacons come from the
snapshot the daemon stores at every heartbeat, whose age says whether the daemon is alive.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zoneinfo
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.core.const import PRIORITY_NAMES


class StatusUnavailable(Exception):
    """There is no agent database to read (yet), or it is not one of ours."""


@contextlib.contextmanager
def _read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The agent's database opened read-only beside the running daemon, or StatusUnavailable."""
    if not db_path.exists():
        raise StatusUnavailable(f"no agent database at {db_path}: has the agent run yet?")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            yield conn
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StatusUnavailable(f"cannot read {db_path}: {exc}") from exc


def read_journey(
    db_path: Path, customer_id: str, since: float, until: float
) -> list[tuple[float, str, str, str]]:
    """(ts, visit id, kind, detail) of one customer's touchpoints, oldest first."""
    with _read_only(db_path) as conn:
        return conn.execute(
            "SELECT ts, coalesce(visit_id, ''), kind, detail FROM journey "
            "WHERE customer_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id",
            (customer_id, since, until),
        ).fetchall()


def journey_lines(
    customer_id: str, store_id: str, timezone: str, rows: Iterable[tuple[float, str, str, str]]
) -> list[str]:
    """What ``edge-agent journey`` prints: plain lines, as support staff paste and grep them."""
    tz = zoneinfo.ZoneInfo(timezone)
    lines = [f"{customer_id} at {store_id}, local time ({timezone})"]
    for ts, visit_id, kind, detail in rows:
        local = datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{local}  visit …{visit_id[-6:]:<6}  {kind:<12}  {detail}")
    return lines


def read_status(db_path: Path, now: float) -> dict[str, Any]:
    with _read_only(db_path) as conn:
        queue = dict(conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority").fetchall())
        oldest = conn.execute("SELECT min(created) FROM outbox").fetchone()[0]
        registry = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    snapshot = json.loads(meta["status"]) if "status" in meta else {}
    return {
        "queue_by_priority": {PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(queue.items())},
        "queue_depth": sum(queue.values()),
        "oldest_queued_s": None if oldest is None else round(max(0.0, now - oldest), 1),
        "registry_size": registry,
        "registry_version": int(meta["registry_version"]) if "registry_version" in meta else None,
        "snapshot": snapshot,
    }
