"""The link's sending logic against in-memory fakes and a clock moved by hand (no broker, no
SQLite): the in-flight window, PUBACKs, refusals and their backoff, stuck rows, expiry, and
the reconnect backoff and refusal detection. test_link.py runs the same link against mosquitto."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.adapters.connection import CONNACK_TIMEOUT_S, ReconnectBackoff, RefusalWatch
from edge_agent.adapters.link_stats import LinkStats
from edge_agent.adapters.uplink import EXPIRY_CHECK_S, REFUSED_BACKOFF_CAP_S, Ack, UplinkWindow
from edge_agent.core.settings import MqttSettings
from tests.fakes import FakeOutbox, FakePublisher, ManualClock

SETTINGS = MqttSettings(inflight_window=3, keepalive_s=30, dead_letter_after=3)


class Rig:
    def __init__(self, settings: MqttSettings = SETTINGS, rows: int = 0) -> None:
        self.time = ManualClock()
        self.outbox = FakeOutbox()
        self.broker = FakePublisher()
        self.stats = LinkStats()
        self.window = UplinkWindow(self.outbox, settings, self.stats, self.time.clock)
        for _ in range(rows):
            self.outbox.add()

    def fill(self) -> list[int]:
        """Fill the window; the row ids this round published."""
        before = len(self.broker.published)
        self.window.fill(self.broker)
        return self.broker.row_ids()[before:]

    def ack(self, *row_ids: int, success: bool = True) -> None:
        acks: deque[Ack] = deque(
            (self.broker.mid_of(row_id), success, "" if success else "Not authorized") for row_id in row_ids
        )
        self.window.settle(acks)


def test_no_more_than_the_window_is_in_flight_and_each_puback_lets_the_next_row_go() -> None:
    rig = Rig(rows=5)
    assert rig.fill() == [1, 2, 3]
    assert rig.fill() == []  # full: nothing more until a PUBACK
    rig.ack(2)
    assert rig.fill() == [4]
    assert rig.window.inflight == 3
    assert rig.stats.published == 4


def test_the_most_urgent_rows_go_first() -> None:
    rig = Rig()
    rig.outbox.add(priority=3)
    urgent = rig.outbox.add(priority=0)
    assert rig.fill()[0] == urgent


def test_a_puback_deletes_its_row_and_dates_the_last_sync_on_the_wall_clock() -> None:
    rig = Rig(rows=2)
    rig.fill()
    assert rig.stats.last_sync is None
    rig.time.wall += 500.0  # a simulated store day's wall clock, far from the monotonic one
    rig.ack(1, 2)
    assert rig.outbox.acknowledged == [1, 2]
    assert rig.stats.acknowledged == 2
    assert rig.stats.last_sync == rig.time.wall
    assert rig.window.inflight == 0


def test_a_puback_for_a_status_message_is_ignored() -> None:
    rig = Rig(rows=1)
    rig.fill()
    rig.window.settle(deque([(999, True, "")]))
    assert rig.outbox.acknowledged == []
    assert rig.window.inflight == 1


def test_a_refused_row_backs_off_on_the_monotonic_clock_doubling_to_the_cap() -> None:
    rig = Rig(MqttSettings(inflight_window=3, dead_letter_after=1000), rows=1)
    assert rig.fill() == [1]
    waits = []
    for attempt in range(1, 8):
        rig.ack(1, success=False)
        assert rig.outbox.attempts[1] == attempt
        rig.time.wall += 3600.0  # a wall-clock step does not release it
        assert rig.fill() == []
        waited = 0.0
        while not rig.fill():  # offered again once its backoff has passed
            assert waited < REFUSED_BACKOFF_CAP_S, "the refused row was never offered again"
            rig.time.monotonic += 1.0
            waited += 1.0
        waits.append(waited)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, REFUSED_BACKOFF_CAP_S, REFUSED_BACKOFF_CAP_S]
    assert rig.stats.refused == 7
    assert rig.stats.resent == 7


def test_refused_rows_do_not_hold_up_the_others() -> None:
    rig = Rig(rows=4)
    assert rig.fill() == [1, 2, 3]
    rig.ack(1, success=False)
    assert rig.fill() == [4]  # row 1 waits out its backoff; row 4 takes its place


def test_a_row_refused_dead_letter_after_times_is_dead_lettered_at_the_wall_time() -> None:
    rig = Rig(rows=1)
    for _ in range(SETTINGS.dead_letter_after):
        assert rig.fill() == [1]
        rig.ack(1, success=False)
        rig.time.advance(REFUSED_BACKOFF_CAP_S)
    assert rig.outbox.dead == {1: rig.time.wall - REFUSED_BACKOFF_CAP_S}
    assert rig.fill() == []


def test_a_row_resent_after_a_refusal_is_counted_as_resent() -> None:
    rig = Rig(rows=1)
    rig.fill()
    rig.ack(1, success=False)
    rig.time.advance(2.0)
    assert rig.fill() == [1]
    assert rig.stats.resent == 1
    rig.ack(1)
    assert rig.outbox.acknowledged == [1]


def test_rows_unacknowledged_for_two_keepalives_are_offered_again() -> None:
    rig = Rig(rows=3)
    rig.fill()
    rig.time.monotonic += 2 * SETTINGS.keepalive_s - 1
    rig.window.release_stuck()
    assert rig.fill() == []
    rig.time.monotonic += 2
    rig.window.release_stuck()
    assert rig.fill() == [1, 2, 3]
    assert rig.stats.resent == 3


def test_a_reconnect_restarts_the_ack_clocks_of_what_paho_resends() -> None:
    rig = Rig(rows=2)
    rig.fill()
    rig.time.monotonic += 2 * SETTINGS.keepalive_s - 1  # an outage almost two keepalives long
    rig.window.reconnected()
    assert rig.stats.resent == 2  # paho resends both
    rig.time.monotonic += 2
    rig.window.release_stuck()
    assert rig.window.inflight == 2  # not sent a second time: their clocks restarted
    rig.time.monotonic += 2 * SETTINGS.keepalive_s
    rig.window.release_stuck()
    assert rig.fill() == [1, 2]  # two keepalives after the reconnect, still unacknowledged


def test_expired_rows_are_dropped_unsent_sweeping_at_most_once_a_second_even_across_a_wall_step() -> None:
    rig = Rig()
    now = rig.time.wall
    stale = rig.outbox.add(expires=now - 1)
    fresh = rig.outbox.add(expires=now + 0.5)
    assert rig.fill() == [fresh]
    assert rig.outbox.expired == {stale: now}
    assert rig.stats.expired == 1
    rig.ack(fresh)
    later = rig.outbox.add(expires=now + 0.5)
    rig.time.advance(EXPIRY_CHECK_S / 2)
    rig.fill()
    rig.ack(later)
    assert rig.outbox.sweeps == [now]  # no second sweep within the second
    rig.time.advance(EXPIRY_CHECK_S)
    rig.outbox.add(expires=now)
    assert rig.fill() == []
    assert rig.outbox.sweeps == [now, now + 1.5 * EXPIRY_CHECK_S]
    rig.time.wall -= 3600  # the wall clock steps back an hour: sweeps go on each second
    rig.time.advance(EXPIRY_CHECK_S)
    rig.fill()
    assert len(rig.outbox.sweeps) == 3


def test_a_publish_paho_did_not_queue_stops_the_round_and_is_not_in_flight() -> None:
    rig = Rig(rows=2)
    rig.broker.rc = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
    assert rig.fill() == []
    assert rig.window.inflight == 0
    rig.broker.rc = MQTTErrorCode.MQTT_ERR_NO_CONN  # queued by paho all the same, sent on reconnect
    assert rig.fill() == [1, 2]
    assert rig.window.inflight == 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("ack"), st.integers(0, 5), st.booleans()),
            st.tuples(st.just("wait"), st.floats(0, 120), st.booleans()),
            st.tuples(st.just("reconnect"), st.just(0), st.booleans()),
        ),
        max_size=60,
    )
)
def test_any_mix_of_acks_refusals_and_waits_keeps_the_window_and_loses_no_row(
    steps: list[tuple[str, int | float, bool]],
) -> None:
    rig = Rig(MqttSettings(inflight_window=4, keepalive_s=5, dead_letter_after=1000), rows=10)
    for action, amount, success in steps:
        rig.window.release_stuck()
        rig.fill()
        assert rig.window.inflight <= 4
        in_flight = [r for r in rig.broker.row_ids() if r in rig.outbox.rows]
        if action == "ack" and in_flight:
            rig.ack(in_flight[int(amount) % len(in_flight)], success=success)
        elif action == "wait":
            rig.time.advance(float(amount))
        elif action == "reconnect":
            rig.window.reconnected()
        assert set(rig.outbox.acknowledged).isdisjoint(rig.outbox.rows)
    # The broker accepts everything from now on: every row gets through, none is lost.
    for _ in range(100):
        rig.time.advance(REFUSED_BACKOFF_CAP_S)
        rig.window.release_stuck()
        published_before = len(rig.broker.published)
        rig.fill()
        rig.ack(*set(rig.broker.row_ids()[published_before:]))
        if not rig.outbox.rows:
            break
    assert sorted(rig.outbox.acknowledged) == list(range(1, 11))


def test_reconnect_attempts_back_off_doubling_to_the_cap_and_a_connection_resets_it() -> None:
    time = ManualClock()
    backoff = ReconnectBackoff(MqttSettings(reconnect_min_s=1, reconnect_max_s=5), time.clock)
    assert backoff.wait() <= 0  # the first attempt is due at once
    waits = []
    for _ in range(5):
        backoff.attempting()
        waits.append(backoff.wait())
        time.monotonic += backoff.wait()
    assert waits == [1, 2, 4, 5, 5]
    time.wall += 3600  # a wall-clock step changes nothing
    assert backoff.wait() == 0
    backoff.connected()
    backoff.attempting()
    assert backoff.wait() == 1


def test_a_lost_connection_waits_at_least_the_current_delay() -> None:
    time = ManualClock()
    backoff = ReconnectBackoff(MqttSettings(reconnect_min_s=1, reconnect_max_s=60), time.clock)
    backoff.attempting()
    backoff.attempting()  # delay now 4
    time.monotonic += 10
    backoff.lost()
    assert backoff.wait() == 4


def _connack(name: str) -> ReasonCode:
    return ReasonCode(PacketTypes.CONNACK, name)


def test_a_connack_refusing_our_credentials_is_a_refusal_a_busy_broker_is_not() -> None:
    watch = RefusalWatch(MqttSettings(host="hq", port=8883), ManualClock().clock)
    watch.attempting()
    assert not watch.answered(_connack("Server busy"))
    assert watch.refusal is None
    watch.attempting()
    assert not watch.answered(_connack("Not authorized"))
    assert watch.refusal is not None
    assert "hq:8883 refused the connection: Not authorized" in str(watch.refusal)
    watch.attempting()
    assert watch.answered(_connack("Success"))
    assert watch.refusal is None


def test_a_broker_silent_to_connect_is_reported_after_the_connack_timeout() -> None:
    time = ManualClock()
    watch = RefusalWatch(MqttSettings(protocol="5"), time.clock)
    watch.attempting()
    time.monotonic += CONNACK_TIMEOUT_S
    watch.check_timeout()
    assert watch.refusal is None
    time.monotonic += 0.1
    watch.check_timeout()
    assert watch.refusal is not None
    assert "check mqtt.protocol" in str(watch.refusal)


def test_a_broker_down_is_not_a_refusal() -> None:
    time = ManualClock()
    watch = RefusalWatch(MqttSettings(), time.clock)
    for _ in range(10):
        watch.attempting()
        watch.nobody_listening()
        time.monotonic += 2 * CONNACK_TIMEOUT_S
        watch.check_timeout()
        watch.closed_unanswered()
    assert watch.refusal is None


@pytest.mark.parametrize("closes", [2, 3])
def test_three_closes_before_any_connack_are_a_refusal(closes: int) -> None:
    watch = RefusalWatch(MqttSettings(), ManualClock().clock)
    for _ in range(closes):
        watch.attempting()
        watch.closed_unanswered()
    assert (watch.refusal is not None) is (closes == 3)
