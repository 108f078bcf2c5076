"""Where HQ keeps the feed: one small interface, a SQLite file (the default) or PostgreSQL.

``--db`` names either a file (SQLite, one machine, the demo) or a ``postgresql://`` URL (a
chain's HQ: several consumer instances on one server, analysts querying it). Both keep the same
tables: ``events`` (each event once, deduplicated on ``event_id``), ``rejected`` (what failed
validation: topic, reason, size, never the payload), ``store_status`` (each store's latest
state), ``gaps`` (per store, boot and stream: how many ``seq`` arrived and the highest, kept up
to date as events are stored) and ``schema_version``. The consumer creates and migrates them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

URL_SCHEMES = ("postgresql://", "postgres://")
DatabaseTarget = Path | str  # a SQLite file, or a PostgreSQL URL
NO_BOOT = ""  # the gap table's key for a boot_id that is missing (read back as None)


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    store_id: str
    boot_id: str | None
    stream: str
    seq: int | None
    schema: str
    ts: datetime
    payload: str  # the message's JSON as the store sent it
    received: float  # wall time it reached this consumer
    consumer: str


@dataclass(frozen=True, slots=True)
class RejectRow:
    topic: str
    reason: str
    payload_bytes: int
    received: float


@dataclass(frozen=True, slots=True)
class StatusRow:
    store_id: str
    ts: datetime
    state: str
    payload: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one commit writes: events (maybe already stored), rejects and statuses."""

    events: Sequence[EventRow] = ()
    rejects: Sequence[RejectRow] = ()
    statuses: Sequence[StatusRow] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    store_id: str
    boot_id: str | None
    stream: str
    missing: int
    highest_seq: int


class StoreUnavailable(Exception):
    """HQ's database cannot be opened (server down, wrong URL, refused credentials)."""


class HqStore(Protocol):
    """One connection to HQ's database, used by one thread."""

    # Errors after which the same batch is worth writing again (the server restarted, a
    # deadlock was broken): the consumer retries rather than leave the messages unacknowledged.
    transient_errors: tuple[type[Exception], ...]

    def write(self, batch: Batch) -> int:
        """Commit ``batch`` in one transaction; return how many of its events were new."""
        ...

    def events(self) -> Iterator[tuple[str, str, str]]:
        """Every stored event as ``(store_id, schema, payload)``, in the order they were stored."""
        ...

    def gaps(self) -> list[Gap]:
        """Streams with missing ``seq``, by store, boot and stream."""
        ...

    def statuses(self) -> Iterator[tuple[str, str]]:
        """Each store's latest state, as ``(store_id, state)``."""
        ...

    def close(self) -> None: ...


def is_url(target: DatabaseTarget) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def parse_target(text: str) -> DatabaseTarget:
    """``--db``: a PostgreSQL URL stays a string, anything else is a SQLite file's path."""
    return text if text.startswith(URL_SCHEMES) else Path(text)


def describe(target: DatabaseTarget) -> str:
    """The target as a log line may show it: a URL without its password."""
    if not is_url(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    host = parts.netloc.rpartition("@")[2]  # as written: [::1]:5432 keeps its brackets
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def open_store(target: DatabaseTarget, application: str = "edge-agent-hq") -> HqStore:
    """Connect to ``target``, creating or migrating its tables first."""
    if is_url(target):
        from edge_agent.hq.store_postgres import PostgresStore  # noqa: PLC0415  # psycopg only for HQ

        return PostgresStore(str(target), application=application)
    from edge_agent.hq.store_sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(Path(target))


def new_events(batch: Iterable[EventRow], stored: set[str]) -> list[EventRow]:
    """The batch's events not in ``stored``, each once (a resend can share a batch with its
    original), first copy kept."""
    seen = set(stored)
    fresh = []
    for row in batch:
        if row.event_id not in seen:
            seen.add(row.event_id)
            fresh.append(row)
    return fresh


def seq_counts(rows: Iterable[EventRow]) -> list[tuple[str, str, str, int, int]]:
    """``(store_id, boot_id, stream, count, highest seq)`` of ``rows`` that carry a seq, sorted
    (so that concurrent writers lock the gap rows in one order and never deadlock). A message
    with a seq and no boot_id (no agent sends one) counts under the boot ``NO_BOOT``."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        if row.seq is None:
            continue
        entry = counts.setdefault((row.store_id, row.boot_id or NO_BOOT, row.stream), [0, 0])
        entry[0] += 1
        entry[1] = max(entry[1], row.seq)
    return [(*key, n, top) for key, (n, top) in sorted(counts.items())]
