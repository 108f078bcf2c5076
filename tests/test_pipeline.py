"""The core through the pipeline: who is recognised, what HQ is told, what is kept in SQLite."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.core.ids import EventIdFactory
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.storage.database import Database
from tests.conftest import make_config
from tests.helpers import KEYS, app_sighting, customers_downlink, orders_downlink, phone_sighting

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def _pipeline(tmp_path: Path, **sections: dict) -> Pipeline:
    config = make_config(tmp_path, **sections)
    return Pipeline(config, Database(config.storage.path), EventIdFactory.seeded("test"))


def _queued(pipeline: Pipeline, schema: str) -> list[dict]:
    return [p for p in pipeline.outbox.peek_payloads() if p["schema"] == schema]


def test_customer_with_ready_order_gets_one_customer_and_one_staff_notification(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), T0)
    pipeline.downlink("retail/v1/stores/s1/in/orders", orders_downlink(("O-1", "c1", "ready")), T0)
    pipeline.process([app_sighting("c1", T0 + t) for t in range(0, 60, 5)])
    notifications = _queued(pipeline, "notification.v1")
    assert sorted(n["audience"] for n in notifications) == ["customer", "staff"]
    assert all(n["data"]["order_id"] == "O-1" for n in notifications)
    assert "Counter B" in notifications[0]["text"]
    visits = _queued(pipeline, "visit.v1")
    assert [v["phase"] for v in visits] == ["started"]
    assert visits[0]["customer_id"] == "c1"


def test_customer_without_consent_is_never_recognised(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c2", False, False)), T0)
    pipeline.downlink("retail/v1/stores/s1/in/orders", orders_downlink(("O-2", "c2", "ready")), T0)
    pipeline.process([app_sighting("c2", T0)])
    assert _queued(pipeline, "visit.v1") == []
    assert _queued(pipeline, "notification.v1") == []
    assert pipeline.core.counters["unresolved_tokens"] == 1


def test_visit_end_is_reported_after_the_absence_timeout(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, presence={"absence_timeout_s": 60})
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), T0)
    pipeline.process([app_sighting("c1", T0), app_sighting("c1", T0 + 30, receiver="counter")])
    pipeline.tick(T0 + 80)
    assert [v["phase"] for v in _queued(pipeline, "visit.v1")] == ["started"]
    pipeline.tick(T0 + 91)
    ended = _queued(pipeline, "visit.v1")[-1]
    assert ended["phase"] == "ended"
    assert ended["duration_s"] == 30.0
    assert ended["receivers"] == ["counter", "entrance"]


def test_anonymous_shoppers_are_counted_in_footfall_and_never_named(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, footfall={"interval_s": 900})
    start = T0 - T0 % 900
    pipeline.process([phone_sighting(f"4A:00:00:00:00:{i:02X}", start + i) for i in range(12)])
    pipeline.tick(start + 900)
    footfall = _queued(pipeline, "footfall.v1")
    assert len(footfall) == 1
    assert footfall[0]["entries"] == 12
    assert footfall[0]["customers_recognised"] == 0
    raw = Path(pipeline.database.path).read_bytes() + Path(str(pipeline.database.path) + "-wal").read_bytes()
    assert b"4A:00:00:00:00" not in raw
    assert "4A:00" not in json.dumps(pipeline.outbox.peek_payloads())


def test_fixed_store_beacons_are_not_visitors(tmp_path: Path) -> None:
    from edge_agent.core.frames import IBeacon, encode_ibeacon
    from edge_agent.core.sighting import Sighting

    beacon = IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    pipeline = _pipeline(tmp_path)
    pipeline.process(
        [Sighting(T0, "entrance", "C0:FF:EE:00:00:01", -50, manufacturer_data=dict([encode_ibeacon(beacon)]))]
    )
    assert pipeline.core.open_visits == 0


def test_registry_and_orders_survive_a_restart(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), T0)
    pipeline.downlink("retail/v1/stores/s1/in/orders", orders_downlink(("O-1", "c1", "ready")), T0)
    pipeline.database.close()
    restarted = _pipeline(tmp_path)
    assert set(restarted.core.customers) == {"c1"}
    restarted.process([app_sighting("c1", T0 + 10)])
    assert len(_queued(restarted, "notification.v1")) == 2


def test_rejected_downlink_is_answered_without_echoing_identity_keys(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    payload = customers_downlink(("c1", True, False)).replace(b'"service": true', b'"service": "maybe"')
    assert pipeline.downlink("retail/v1/stores/s1/in/customers", payload, T0) is False
    [error] = _queued(pipeline, "error.v1")
    assert error["kind"] == "customers"
    assert error["message_id"] == "reg-1"
    assert "upsert[0].consent.service" in error["reason"]
    assert KEYS["c1"].hex() not in json.dumps(error)
    assert len(pipeline.core.customers) == 0


def test_full_registry_resync_replaces_everyone(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), T0)
    resync = json.loads(customers_downlink(("c2", True, False), message_id="reg-2"))
    resync.update(full=True, version=7)
    pipeline.downlink("retail/v1/fleet/in/customers", json.dumps(resync).encode(), T0)
    assert set(pipeline.core.customers) == {"c2"}
    assert pipeline.state.registry_version() == 7
    assert {c.customer_id for c in pipeline.state.customers()} == {"c2"}


def test_an_iphone_showing_only_the_overflow_area_is_still_a_visitor(tmp_path: Path) -> None:
    from edge_agent.core.frames import encode_apple_overflow
    from edge_agent.core.sighting import Sighting

    pipeline = _pipeline(tmp_path)
    company, data = encode_apple_overflow([62])
    pipeline.process([Sighting(T0, "entrance", "6B:00:00:00:00:01", -60, manufacturer_data={company: data})])
    assert pipeline.core.open_visits == 1


def test_reconfigure_rebuilds_token_tables_only_when_identity_settings_change(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), T0)
    core = pipeline.core
    resolver = core._resolver
    presence = pipeline.config.presence.model_copy(update={"absence_timeout_s": 30.0})
    core.reconfigure(pipeline.config.model_copy(update={"presence": presence}))
    assert core._resolver is resolver  # same identity settings: every precomputed window kept

    identity = pipeline.config.identity.model_copy(update={"rotation_exponent": 8})
    core.reconfigure(pipeline.config.model_copy(update={"identity": identity}))
    pipeline.process([app_sighting("c1", T0 + 5, k=8)])
    assert [v["customer_id"] for v in _queued(pipeline, "visit.v1")] == ["c1"]


def test_an_open_visit_survives_a_restart_with_its_journey(tmp_path: Path) -> None:
    sections = {"presence": {"absence_timeout_s": 60, "zone_min_s": 2}}
    pipeline = _pipeline(tmp_path, **sections)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), T0)
    pipeline.process([app_sighting("c1", T0 + t) for t in range(10)])
    pipeline.process([app_sighting("c1", T0 + t, receiver="counter") for t in range(10, 20)])
    [started] = _queued(pipeline, "visit.v1")
    pipeline.database.close()  # the agent stops (or the power goes) in the middle of the visit

    restarted = _pipeline(tmp_path, **sections)
    assert restarted.core.open_visits == 1
    restarted.process([app_sighting("c1", T0 + t, receiver="counter") for t in range(20, 40)])
    restarted.tick(T0 + 200)
    visits = _queued(restarted, "visit.v1")
    assert [v["phase"] for v in visits] == ["started", "ended"]  # one visit, not two
    ended = visits[-1]
    assert ended["visit_id"] == started["visit_id"]
    assert ended["duration_s"] == 39.0
    assert [leg["zone"] for leg in ended["path"]] == ["entrance", "counter"]


def test_a_visit_that_went_silent_while_the_agent_was_down_ends_at_its_last_sighting(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, presence={"absence_timeout_s": 60})
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), T0)
    pipeline.process([app_sighting("c1", T0 + t) for t in range(0, 40, 5)])
    pipeline.tick(T0 + 40)  # the last sighting (T0 + 35) is on disk before the stop
    pipeline.database.close()

    restarted = _pipeline(tmp_path, presence={"absence_timeout_s": 60})
    restarted.tick(T0 + 3600)
    [ended] = [v for v in _queued(restarted, "visit.v1") if v["phase"] == "ended"]
    assert ended["duration_s"] == 35.0
    assert restarted.state.open_visits() == []


def test_erasing_a_customer_drops_the_kept_open_visit(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), T0)
    pipeline.process([app_sighting("c1", T0)])
    assert len(pipeline.state.open_visits()) == 1
    delete = json.dumps({"schema": "customers.v1", "message_id": "reg-2", "delete": ["c1"]}).encode()
    assert pipeline.downlink("retail/v1/stores/s1/in/customers", delete, T0 + 1)
    assert pipeline.state.open_visits() == []


def test_every_stream_is_numbered_from_one_within_a_boot_and_a_restart_is_a_new_boot(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, presence={"absence_timeout_s": 60})
    pipeline.downlink("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), T0)
    pipeline.process([app_sighting("c1", T0 + t) for t in range(0, 30, 3)])
    pipeline.tick(T0 + 1000)
    first_boot = pipeline.outbox.peek_payloads()
    boot = first_boot[0]["boot_id"]
    assert boot
    assert {p["boot_id"] for p in first_boot} == {boot}
    by_schema: dict[str, list[int]] = {}
    for payload in first_boot:
        by_schema.setdefault(payload["schema"], []).append(payload["seq"])
    assert by_schema["visit.v1"] == [1, 2]
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in by_schema.values())
    assert pipeline.status("online", T0 + 1000).boot_id == boot
    pipeline.database.close()

    config = make_config(tmp_path, presence={"absence_timeout_s": 60})
    restarted = Pipeline(config, Database(config.storage.path), EventIdFactory())  # as the daemon does
    restarted.process([app_sighting("c1", T0 + 5000)])
    newest = restarted.outbox.peek_payloads()[-1]
    assert newest["boot_id"] != boot
    assert newest["seq"] == 1


_EXAMPLES = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)))
def test_a_downlink_with_one_bad_record_is_never_half_applied(tmp_path: Path, value: object) -> None:
    pipeline = _pipeline(tmp_path / f"example-{next(_EXAMPLES)}")  # a fresh store per example
    try:
        body = json.loads(customers_downlink(("c1", True, False), ("c2", True, True)))
        body["upsert"][1]["consent"] = value  # the first record is fine, the second may not be
        before = (len(pipeline.core.customers), list(pipeline.state.customers()))
        applied = pipeline.downlink("retail/v1/stores/s1/in/customers", json.dumps(body).encode(), T0)
        after = (len(pipeline.core.customers), list(pipeline.state.customers()))
        if applied:
            assert after[0] == 2
        else:
            assert after == before  # neither c1 nor c2, in memory or in the file
            [error] = _queued(pipeline, "error.v1")
            assert "upsert[1].consent" in error["reason"]
        # and the agent goes on: a good downlink still applies
        assert pipeline.downlink(
            "retail/v1/stores/s1/in/customers", customers_downlink(("c3", True, True)), T0
        )
    finally:
        pipeline.database.close()


def test_a_token_build_that_keeps_failing_is_counted_in_status_and_warned_every_few_minutes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The main loop asks for the next slice again at once: a build that raises every time (a
    broken AES backend, memory) must show in status and the journal without flooding it."""
    pipeline = _pipeline(tmp_path)

    def broken(now: float, slots: int = 0) -> bool:
        raise MemoryError("no room for a token table")

    pipeline.core.precompute = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="edge_agent.daemon.pipeline"):
        for n in range(1000):
            assert pipeline.precompute(T0 + n / 10) is False
        pipeline.precompute(T0 + 400)  # five minutes later: the reminder, with the count
    warnings = [r.getMessage() for r in caplog.records if "token window build failed" in r.getMessage()]
    assert warnings == [
        "token window build failed", "token window build failed (999 more since the last warning)"
    ]  # fmt: skip
    status = pipeline.status("online", T0 + 400)
    assert status.token_tables is not None
    assert status.token_tables["build_errors"] == 1001
    assert status.token_tables["far_windows"] == 0
