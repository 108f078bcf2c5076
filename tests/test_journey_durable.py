"""The journey rules' promises in flight outlive a restart of the agent: a coupon issued before
it is still linked when redeemed after it, an order's arrival still leads to its counter, wait
and left-uncollected messages, a pending outcome is still decided, a held check-in message is
still sent. Each test stops the agent (closing its SQLite file) and starts a new one on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_agent.core.ids import EventIdFactory
from edge_agent.core.trace import parse_trace_line
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.storage.database import Database
from tests.test_journey import OFFERS, RECEIPT, T0, _customers, _downlink, _of, _order, _walk
from tests.test_journey_rules import _config, _receipt


def _on_file(config: Any, path: Path) -> Any:
    return config.model_copy(update={"storage": config.storage.model_copy(update={"path": path})})


@contextmanager
def _agent(config: Any, boot: int) -> Iterator[Pipeline]:
    """One run of the agent on the config's file, stopped (file closed) on leaving."""
    database = Database(config.storage.path)
    try:
        yield Pipeline(config, database, EventIdFactory.seeded(f"boot-{boot}"))
    finally:
        database.close()


def _drive(
    pipeline: Pipeline, lines: list[str], until: float, downlinks: dict[float, tuple[str, bytes]]
) -> None:
    """Each second's sightings, then the second's tick (as the daemon's loop does), and the
    downlinks due at their second, until ``until``."""
    by_second: dict[float, list[Any]] = {}
    for line in lines:
        sighting = parse_trace_line(line)
        assert sighting is not None
        by_second.setdefault(float(int(sighting.ts)), []).append(sighting)
    now = min([*by_second, *downlinks, until])
    while now <= until:
        if now in downlinks:
            kind, payload = downlinks[now]
            assert pipeline.downlink(pipeline.topics.downlink(kind), payload, now)
        if now in by_second:
            pipeline.process(by_second[now])
        pipeline.tick(now + 0.999)
        now += 1.0


def _load(pipeline: Pipeline, *downlinks: tuple[str, bytes]) -> None:
    for kind, payload in downlinks:
        assert pipeline.downlink(pipeline.topics.downlink(kind), payload, T0 - 1)


def test_a_coupon_issued_before_a_restart_is_linked_when_redeemed_after_it(tmp_path: Path) -> None:
    config = _on_file(_config(), tmp_path / "agent.db")
    walk = _walk("c1", (("entrance", 10), ("shop", 60), ("entrance", 10)))
    with _agent(config, 0) as pipeline:
        _load(pipeline, _customers(("c1", True, True)), _downlink("offers", **OFFERS))
        _drive(pipeline, walk, T0 + 160, {T0 + 40: _downlink("receipts", **RECEIPT)})
        [thanks] = [
            n for n in _of(pipeline.outbox.peek_payloads(), "notification.v1")
            if n["template"] == "post_purchase.thanks"
        ]  # fmt: skip
        assert thanks["data"]["coupon"] == "GRIND10"
    with _agent(config, 1) as pipeline:  # the next day's restart, the coupon still valid
        _drive(pipeline, [], T0 + 86400, {T0 + 86400: _receipt("R-2", ["GRIND10"])})
        messages = pipeline.outbox.peek_payloads()
    [redemption] = _of(messages, "redemption.v1")
    assert redemption["notification_event_id"] == thanks["event_id"]
    assert redemption["issued_visit_id"] == thanks["visit_id"]
    outcomes = [o for o in _of(messages, "outcome.v1") if o["template"] == "post_purchase.thanks"]
    assert [(o["result"], o["success"]) for o in outcomes] == [("redeemed", True)]


def test_an_order_arrival_a_pending_outcome_and_a_held_check_in_continue_across_a_restart(
    tmp_path: Path,
) -> None:
    config = _on_file(
        _config(counter_wait={"after_s": 40, "repeat_s": 600}, check_in={"enabled": True}),
        tmp_path / "agent.db",
    )
    before = _walk("c1", (("entrance", 10), ("shop", 10)))
    after = _walk("c1", (("counter", 130),), start=T0 + 20)  # the restart takes no time at all
    with _agent(config, 0) as pipeline:
        _load(pipeline, _customers(("c1", True, True)), _order())
        _drive(pipeline, before, T0 + 19, {})
        said = pipeline.outbox.peek_payloads()
        assert [o["phase"] for o in _of(said, "order.v1")] == ["arrived"]
        assert _of(said, "outcome.v1") == []  # the arrival message waits for the counter
        assert len(_of(said, "check_in.v1")) == 1
        assert [n["template"] for n in _of(said, "notification.v1") if n["audience"] == "customer"] == [
            "cnc.arrival.customer"
        ]  # the check-in message is held for the minimum gap
    with _agent(config, 1) as pipeline:
        _drive(pipeline, after, T0 + 240, {})
        messages = pipeline.outbox.peek_payloads()
    assert [o["phase"] for o in _of(messages, "order.v1")] == [
        "arrived", "at_counter", "counter_wait", "left_uncollected",
    ]  # fmt: skip
    [left] = [o for o in _of(messages, "order.v1") if o["phase"] == "left_uncollected"]
    assert left["time_at_counter_s"] > 120
    [outcome] = [o for o in _of(messages, "outcome.v1") if o["template"] == "cnc.arrival.customer"]
    assert (outcome["result"], outcome["success"]) == ("reached_counter", True)
    [arrival] = [n for n in _of(messages, "notification.v1") if n["template"] == "cnc.arrival.customer"]
    [welcome] = [n for n in _of(messages, "notification.v1") if n["template"] == "loyalty.check_in"]
    gap = config.rules.guards.min_gap_s
    sent_after = _ts(welcome) - _ts(arrival)
    assert gap <= sent_after < gap + 1.5  # at the first tick the gap allows
    assert len(_of(messages, "check_in.v1")) == 1
    assert [s for s in _of(messages, "suppressed.v1") if s["template"] == "loyalty.check_in"] == []


def _ts(message: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(message["ts"]).timestamp()


def test_an_outcome_whose_visit_did_not_survive_the_restart_is_decided_at_the_first_tick() -> None:
    from edge_agent.core.events import Envelopes
    from edge_agent.core.journey.durable import OUTCOME, Journal, StateChange
    from edge_agent.core.journey.outcomes import Outcomes

    record = {
        "kind": "counter", "event_id": "n-1", "customer_id": "c1", "visit_id": "v-gone",
        "template": "cnc.arrival.customer", "sent_at": T0, "deadline": None, "zones": ["counter"],
    }  # fmt: skip
    journal = Journal()
    outcomes = Outcomes(Envelopes("s1", EventIdFactory.seeded("orphans")), journal)
    outcomes.restore([record], open_visits=set())
    assert len(outcomes) == 0  # not waiting on a visit that is gone
    [decided] = outcomes.expire(T0 + 100)
    assert (decided.notification_event_id, decided.result, decided.success) == (
        "n-1", "counter_not_reached", False,
    )  # fmt: skip
    assert journal.drain() == [StateChange(OUTCOME, "n-1", "c1", None)]  # and no longer kept


def test_changes_not_committed_are_due_again_unless_a_newer_one_came() -> None:
    from edge_agent.core.journey.durable import COUPON, Journal, StateChange

    journal = Journal()
    journal.put(COUPON, "a", "c1", {"n": 1})
    journal.put(COUPON, "b", "c1", {"n": 1})
    drained = journal.drain()
    journal.drop(COUPON, "b", "c1")  # redeemed meanwhile
    journal.undo(drained)  # the first write did not commit (a full disk)
    assert sorted(journal.drain(), key=lambda c: c.key) == [
        StateChange(COUPON, "a", "c1", {"n": 1}), StateChange(COUPON, "b", "c1", None),
    ]  # fmt: skip
