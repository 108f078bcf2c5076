"""The eviction policy on its own (pure: lists and iterators in, choices out), then on a real
file where its order matters: expired rows before any telemetry, the clock the outbox is given."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.clock import Clock
from edge_agent.core.const import PRIORITY_NOTIFICATION, PRIORITY_TELEMETRY, PRIORITY_TRANSACTIONAL
from edge_agent.core.events import FootfallMessage, NotificationMessage, utc
from edge_agent.core.topics import Topics
from edge_agent.storage.database import Database
from edge_agent.storage.outbox import GapRun, Outbox, policy

TOPICS = Topics("retail/v1", "s1")


class Row(NamedTuple):
    id: int
    priority: int
    size: int
    expires: float | None


_PRIORITIES = st.sampled_from([PRIORITY_NOTIFICATION, PRIORITY_TRANSACTIONAL, PRIORITY_TELEMETRY])


@st.composite
def queues(draw: st.DrawFn) -> list[Row]:
    """Queued rows in queue order: any priority, size and expiry."""
    fields = draw(
        st.lists(st.tuples(_PRIORITIES, st.integers(1, 600), st.none() | st.floats(0, 100)), max_size=60)
    )
    return [Row(index + 1, p, size, expires) for index, (p, size, expires) in enumerate(fields)]


def _counting(rows: list[Row], read: list[int]) -> Iterator[Row]:
    for row in rows:
        read[0] += 1
        yield row


@given(queue=queues(), to_free=st.integers(-100, 20_000))
def test_eviction_takes_only_telemetry_oldest_first_and_enough_when_there_is_enough(
    queue: list[Row], to_free: int
) -> None:
    read = [0]
    evicted = policy.oldest_telemetry(_counting(queue, read), to_free)
    telemetry = [row for row in queue if row.priority == PRIORITY_TELEMETRY]
    freed = sum(row.size for row in evicted)
    assert all(row.priority == PRIORITY_TELEMETRY for row in evicted)  # never anything else
    assert evicted == telemetry[: len(evicted)]  # the oldest, in order
    if to_free <= 0:
        assert evicted == []
    elif sum(row.size for row in telemetry) >= to_free:
        assert freed >= to_free
        assert freed - evicted[-1].size < to_free  # and no more than it takes
        assert read[0] == queue.index(evicted[-1]) + 1  # the cursor read no further
    else:
        assert evicted == telemetry  # not enough: all there is


@given(queue=queues(), now=st.floats(0, 100))
def test_expired_means_past_its_expiry_whatever_the_priority(queue: list[Row], now: float) -> None:
    expired = policy.expired(queue, now)
    assert expired == [row for row in queue if row.expires is not None and row.expires < now]


@given(queue=queues(), now=st.floats(0, 100), shortfall=st.integers(1, 20_000))
def test_expired_rows_go_first_and_telemetry_only_for_what_they_did_not_free(
    queue: list[Row], now: float, shortfall: int
) -> None:
    """The order the outbox applies the policy in: every expired row, then telemetry for the
    rest of the shortfall; notifications and transactional rows that have not expired stay."""
    expired = policy.expired(queue, now)
    remaining = [row for row in queue if row not in expired]
    evicted = policy.oldest_telemetry(remaining, shortfall - sum(row.size for row in expired))
    kept = [row for row in remaining if row not in evicted]
    assert not set(expired) & set(evicted)
    if sum(row.size for row in expired) >= shortfall:
        assert evicted == []
    for row in kept:
        assert row.priority != PRIORITY_TELEMETRY or all(e.id < row.id for e in evicted)
    assert {r for r in queue if r.priority != PRIORITY_TELEMETRY and r not in expired} <= set(kept)


@given(sizes=st.lists(st.integers(0, 500), max_size=40), room=st.integers(0, 5_000))
def test_incoming_messages_are_kept_in_order_while_they_fit_and_the_rest_refused(
    sizes: list[int], room: int
) -> None:
    kept = policy.fit(sizes, room)
    assert len(kept) == len(sizes)
    left = room
    for size, keep in zip(sizes, kept, strict=True):
        assert keep == (size <= left)
        if keep:
            left -= size
    assert sum(s for s, k in zip(sizes, kept, strict=True) if k) <= room


def test_a_shortfall_is_what_the_incoming_bytes_overrun_the_cap_by() -> None:
    assert policy.shortfall(900, 50, 1000) == -50
    assert policy.shortfall(900, 150, 1000) == 50


@given(seqs=st.lists(st.integers(1, 40), unique=True, max_size=30), unnumbered=st.integers(0, 3))
def test_gap_runs_cover_every_dropped_number_once_in_contiguous_runs(
    seqs: list[int], unnumbered: int
) -> None:
    dropped = [("b1", "events/footfall", seq) for seq in [*seqs, *[None] * unnumbered]]
    if not dropped:
        assert GapRun.runs("evicted", dropped) == []
        return
    runs = GapRun.runs("evicted", dropped)
    if not seqs:
        assert runs == [GapRun("evicted", "b1", "events/footfall", None, None, unnumbered)]
        return
    covered = [n for run in runs for n in range(run.first_seq or 0, (run.last_seq or 0) + 1)]
    assert covered == sorted(seqs)
    assert all(run.count == (run.last_seq or 0) - (run.first_seq or 0) + 1 for run in runs)
    assert all(a.last_seq is not None and b.first_seq is not None and b.first_seq > a.last_seq + 1
               for a, b in itertools.pairwise(runs))  # fmt: skip


def test_a_held_gap_that_continues_the_last_run_of_its_stream_merges_into_it() -> None:
    held: list[GapRun] = []
    GapRun("refused", "b1", "events/visit", 1, 3, 3).hold(held)
    GapRun("refused", "b1", "events/zone", 1, 1, 1).hold(held)
    GapRun("refused", "b1", "events/visit", 4, 6, 3).hold(held)  # continues 1-3
    GapRun("refused", "b1", "events/visit", 9, 9, 1).hold(held)  # does not
    assert held == [
        GapRun("refused", "b1", "events/visit", 1, 6, 6),
        GapRun("refused", "b1", "events/zone", 1, 1, 1),
        GapRun("refused", "b1", "events/visit", 9, 9, 1),
    ]


def _footfall(n: int) -> FootfallMessage:
    return FootfallMessage(
        event_id=f"f{n}", store_id="s1", ts=utc(n), interval_start=utc(0), interval_end=utc(n),
        entries=1, exits=0, occupancy=1, customers_recognised=0,
    )  # fmt: skip


def _notification(n: int, expires: float, text: str = "hi") -> NotificationMessage:
    return NotificationMessage(
        event_id=f"n{n}", store_id="s1", ts=utc(n), audience="customer", customer_id="c", visit_id="v",
        template="t", language="en", text=text, expires=utc(expires),
    )  # fmt: skip


def _gap_reasons(outbox: Outbox) -> list[str]:
    return [p["reason"] for p in outbox.peek_payloads() if p["schema"] == "gap.v1"]


def test_at_the_cap_an_expired_notification_goes_before_any_telemetry(tmp_path: Path) -> None:
    size = len(_footfall(1).to_json()) + 80
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS, boot_id="b1", max_bytes=20 * size)
    long_text = "x" * (12 * size)  # an expired notification as large as twelve telemetry rows
    outbox.add([_notification(1, expires=10, text=long_text), *(_footfall(n) for n in range(1, 5))], now=0)
    outbox.add([_footfall(n) for n in range(5, 11)], now=20)  # past its expiry: it frees the room
    assert _gap_reasons(outbox) == ["expired"]
    assert [p["seq"] for p in outbox.peek_payloads() if p["schema"] == "footfall.v1"] == list(range(1, 11))


def test_the_full_disk_routine_and_the_refusal_log_read_the_clock_they_are_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wall, monotonic = [0.0], [1000.0]
    clock = Clock(wall=lambda: wall[0], monotonic=lambda: monotonic[0])
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS, boot_id="b1", clock=clock)
    outbox.add([_notification(1, expires=50), _footfall(1)], now=0)
    wall[0] = 10.0
    outbox.make_space()  # evicts the telemetry; the notification has not expired at 10
    assert _gap_reasons(outbox) == ["evicted"]
    wall[0] = 60.0
    outbox.make_space()
    assert _gap_reasons(outbox) == ["evicted", "expired"]

    def errors() -> int:
        return sum(r.levelno == logging.ERROR and "refusing" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.DEBUG):
        outbox.refuse([_footfall(2)], now=61)
        monotonic[0] += 30  # within the minute: quiet
        outbox.refuse([_footfall(3)], now=62)
        assert errors() == 1
        monotonic[0] += 31
        outbox.refuse([_footfall(4)], now=63)
        assert errors() == 2
