"""Receivers' calibration estimates kept in SQLite, so a restart zones shoppers with them at once.

Small: one row per receiver (its estimated 1 m power, the readings behind it, when). Written in
the tick's transaction when the estimates moved; the samples themselves are not kept, since they
refill within minutes and an old sample must not outlive its window anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.storage.database import Database


class CalibrationStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        database.db.table("calibration").create(
            {"receiver": str, "power_dbm": float, "samples": int, "at": float},
            pk="receiver", if_not_exists=True,
        )  # fmt: skip

    def save(self, records: Sequence[tuple[str, float, int]], now: float) -> None:
        """Replace the kept estimates (call inside the transaction that commits the tick)."""
        with self._database.transaction() as conn:
            conn.execute("DELETE FROM calibration")
            conn.executemany(
                "INSERT INTO calibration VALUES (?,?,?,?)", [(r, p, n, now) for r, p, n in records]
            )

    def load(self) -> list[tuple[str, float, int]]:
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT receiver, power_dbm, samples FROM calibration ORDER BY receiver"
            ).fetchall()
        return [(str(r), float(p), int(n)) for r, p, n in rows]
