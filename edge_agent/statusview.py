"""``edge-agent status``: what a technician needs to know about the local agent, read-only.

Queue and registry figures are read live from the daemon's SQLite file (WAL lets a reader in
beside the running daemon); link state, last sync, scanners and missing beacons come from the
snapshot the daemon stores at every heartbeat, whose age says whether the daemon is alive.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from edge_agent.const import PRIORITY_NAMES


class StatusUnavailable(Exception):
    """There is no agent database to read (yet), or it is not one of ours."""


def read_journey(
    db_path: Path, customer_id: str, since: float, until: float
) -> list[tuple[float, str, str, str]]:
    """(ts, visit id, kind, detail) of one customer's touchpoints, oldest first."""
    if not db_path.exists():
        raise StatusUnavailable(f"no agent database at {db_path}: has the agent run yet?")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT ts, coalesce(visit_id, ''), kind, detail FROM journey "
                "WHERE customer_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id",
                (customer_id, since, until),
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StatusUnavailable(f"cannot read {db_path}: {exc}") from exc
    return rows


def read_status(db_path: Path, now: float) -> dict[str, Any]:
    if not db_path.exists():
        raise StatusUnavailable(f"no agent database at {db_path}: has the agent run yet?")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            queue = dict(conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority").fetchall())
            oldest = conn.execute("SELECT min(created) FROM outbox").fetchone()[0]
            registry = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StatusUnavailable(f"cannot read {db_path}: {exc}") from exc
    snapshot = json.loads(meta["status"]) if "status" in meta else {}
    return {
        "queue_by_priority": {PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(queue.items())},
        "queue_depth": sum(queue.values()),
        "oldest_queued_s": None if oldest is None else round(max(0.0, now - oldest), 1),
        "registry_size": registry,
        "registry_version": int(meta["registry_version"]) if "registry_version" in meta else None,
        "snapshot": snapshot,
    }
