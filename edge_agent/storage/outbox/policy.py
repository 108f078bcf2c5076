"""What a full outbox drops, decided from each queued row's priority, size and expiry alone.

Pure: the outbox fetches the candidates and deletes what is chosen here; which rows go and why
is decided here and nowhere else. In order:

1. rows past their expiry, all of them (a notification that expired can no longer help);
2. then telemetry, oldest first, until the bytes asked for are free;
3. notifications and transactional events are never evicted: new messages that still do not
   fit are refused (``fit``), each reported to HQ as a gap by the caller.

Candidates may come from a cursor: ``oldest_telemetry`` stops reading once it has enough, so a
backlog of a million rows is read only as far as needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from edge_agent.core.const import PRIORITY_TELEMETRY


class Candidate(Protocol):
    """A queued row as the policy sees it."""

    @property
    def id(self) -> int: ...  # the queue order: a lower id was enqueued earlier

    @property
    def priority(self) -> int: ...

    @property
    def size(self) -> int: ...  # payload bytes

    @property
    def expires(self) -> float | None: ...  # Unix time, None: never


C = TypeVar("C", bound=Candidate)


def shortfall(queued_bytes: int, incoming_bytes: int, max_bytes: int) -> int:
    """Bytes to free before ``incoming_bytes`` fit under ``max_bytes`` (0 or less: they fit)."""
    return queued_bytes + incoming_bytes - max_bytes


def is_expired(candidate: Candidate, now: float) -> bool:
    return candidate.expires is not None and candidate.expires < now


def expired(candidates: Iterable[C], now: float) -> list[C]:
    """Every candidate past its expiry at ``now``, of any priority."""
    return [c for c in candidates if is_expired(c, now)]


def oldest_telemetry(queued: Iterable[C], to_free: int) -> list[C]:
    """Telemetry to evict, oldest first, until ``to_free`` bytes are free (all there is, if
    that is not enough; none if nothing needs freeing).

    ``queued`` is in queue order (ascending id) and may hold rows of any priority: only
    telemetry is taken. It is read no further than needed.
    """
    chosen: list[C] = []
    if to_free <= 0:
        return chosen
    freed = 0
    for candidate in queued:
        if candidate.priority != PRIORITY_TELEMETRY:
            continue
        chosen.append(candidate)
        freed += candidate.size
        if freed >= to_free:
            break
    return chosen


def fit(sizes: Sequence[int], room: int) -> list[bool]:
    """Which of the incoming messages (by payload size, in order) are kept in ``room`` bytes:
    each that still fits is kept, in order; one that does not is refused, and a smaller one
    after it may still fit."""
    kept = []
    for size in sizes:
        fits = size <= room
        if fits:
            room -= size
        kept.append(fits)
    return kept
