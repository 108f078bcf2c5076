"""``edge-agent journey``: one customer's touchpoints as support staff read them.

It lives in storage beside the ``journey`` table it reads (``storage.state`` writes it, prunes
it and erases a customer from it), so the query and the table's columns change together; the
command only parses its options and prints these lines. The demo prints the same lines.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path

from edge_agent.storage.readonly import open_read_only

Touchpoint = tuple[float, str, str, str]  # ts, visit id, kind, detail


def read_journey(db_path: Path, customer_id: str, since: float, until: float) -> list[Touchpoint]:
    """(ts, visit id, kind, detail) of one customer's touchpoints, oldest first: in the order of
    the times their lines show (when each happened to the shopper, see
    ``core.journey.touchpoints``), ties in the order they were kept."""
    with open_read_only(db_path) as conn:
        return conn.execute(
            "SELECT ts, coalesce(visit_id, ''), kind, detail FROM journey "
            "WHERE customer_id = ? AND ts >= ? AND ts < ? ORDER BY ts, id",
            (customer_id, since, until),
        ).fetchall()


def local_day_bounds(day: date, timezone: str) -> tuple[float, float]:
    """``(since, until)``: the Unix seconds of the store's local midnight that starts ``day`` and
    of the next one (23 or 25 hours later on the days clocks change)."""
    tz = zoneinfo.ZoneInfo(timezone)
    since = datetime.combine(day, time(0), tz).timestamp()
    until = datetime.combine(day + timedelta(days=1), time(0), tz).timestamp()
    return since, until


def journey_lines(customer_id: str, store_id: str, timezone: str, rows: Iterable[Touchpoint]) -> list[str]:
    """What ``edge-agent journey`` prints: plain lines, as support staff paste and grep them."""
    tz = zoneinfo.ZoneInfo(timezone)
    lines = [f"{customer_id} at {store_id}, local time ({timezone})"]
    for ts, visit_id, kind, detail in rows:
        local = datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{local}  visit …{visit_id[-6:]:<6}  {kind:<12}  {detail}")
    return lines
