"""Nothing grows: what the agent remembers per address, receipt or customer stays bounded over
days of traffic (GATT cache and retries, receipts seen, beacon addresses, notification caps)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge_agent.adapters.gatt import TokenReader
from edge_agent.core.beacons import BeaconFleet
from edge_agent.core.const import ADDRESSES_PER_BEACON, GATT_MAX_ADDRESSES, GATT_SWEEP_S
from edge_agent.core.downlinks import parse_downlink
from edge_agent.core.frames import EddystoneTlm
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.rules import JourneyRules
from edge_agent.core.registry import Customer
from edge_agent.core.settings import (
    BeaconHealthSettings,
    BeaconSettings,
    GattSettings,
    GuardSettings,
    RulesSettings,
)
from tests.fakes import ManualClock


class _Device:
    def __init__(self, address: str) -> None:
        self.address = address


def _reader(clock: ManualClock, outcome: bytes | None) -> TokenReader:
    reader = TokenReader(GattSettings(overflow_bit=3, retry_min_s=5.0, retry_max_s=60.0), clock.clock)

    async def connect_and_read(device: object) -> bytes:
        if outcome is None:
            raise TimeoutError("no answer")
        return outcome

    reader._connect_and_read = connect_and_read  # type: ignore[method-assign]
    return reader


def _read_many(reader: TokenReader, addresses: list[str]) -> None:
    async def all_of_them() -> None:
        for address in addresses:
            if reader.should_read(address):
                await reader._read(_Device(address))  # type: ignore[arg-type]

    asyncio.run(all_of_them())


@pytest.mark.parametrize("outcome", [None, b"\x01" * 8], ids=["failed reads", "cached tokens"])
def test_gatt_forgets_addresses_that_never_come_back(outcome: bytes | None) -> None:
    clock = ManualClock()
    reader = _reader(clock, outcome)
    _read_many(reader, [f"AA:00:00:00:{i // 256:02X}:{i % 256:02X}" for i in range(3000)])
    assert len(reader._retry) + len(reader._cache) == 3000
    # A day later the phones have rotated their addresses long ago.
    clock.advance(max(GATT_SWEEP_S, 86_400.0))
    _read_many(reader, ["BB:00:00:00:00:01"])
    assert len(reader._retry) + len(reader._cache) == 1


def test_gatt_keeps_at_most_its_bound_even_within_the_expiry() -> None:
    clock = ManualClock()
    reader = _reader(clock, b"\x02" * 8)
    addresses = [
        f"CC:00:00:{i // 65536:02X}:{i // 256 % 256:02X}:{i % 256:02X}"
        for i in range(GATT_MAX_ADDRESSES + 50)
    ]
    _read_many(reader, addresses)
    clock.advance(GATT_SWEEP_S)
    _read_many(reader, ["DD:00:00:00:00:01"])
    assert len(reader._cache) <= GATT_MAX_ADDRESSES
    assert reader.cached_token(addresses[-1]) == b"\x02" * 8  # the newest stay


def _receipts(first: int, count: int) -> bytes:
    receipts = [
        {"receipt_id": f"R-{i}", "customer_id": "c1", "total": 1.0, "items": [{"sku": "S", "quantity": 1}]}
        for i in range(first, first + count)
    ]
    return json.dumps({"schema": "receipts.v1", "message_id": f"m{first}", "receipts": receipts}).encode()


def test_receipts_seen_are_bounded_and_the_latest_resends_still_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edge_agent.core.journey.rules.RECEIPTS_REMEMBERED", 50)
    rules = JourneyRules(RulesSettings(), "s1", "UTC", EventIdFactory.seeded("r"))
    purchases = 0
    for batch in range(10):
        caused = rules.apply(parse_downlink("receipts", _receipts(batch * 20, 20)), 0.0, lambda c: None)
        purchases += sum(1 for m in caused if m.schema_name == "purchase.v1")
    assert purchases == 200
    assert len(rules._receipts_seen) == 50
    resent = rules.apply(parse_downlink("receipts", _receipts(170, 30)), 0.0, lambda c: None)
    assert [m for m in resent if m.schema_name == "purchase.v1"] == []


def test_a_beacon_that_randomises_its_address_leaves_a_bounded_trail() -> None:
    fleet = BeaconFleet(
        [BeaconSettings(id="door", name="door")],
        BeaconHealthSettings(missing_after_s=600, low_battery_mv=2500, summary_interval_s=3600),
        "s1", EventIdFactory.seeded("b"),
    )  # fmt: skip
    for rotation in range(7 * 96):  # a week of 15-minute addresses
        fleet.seen(
            "door", f"EE:00:00:00:{rotation // 256:02X}:{rotation % 256:02X}", "entrance", rotation * 900.0
        )
    assert len(fleet._by_address) <= ADDRESSES_PER_BEACON
    fleet.telemetry("EE:00:00:00:02:9F", EddystoneTlm(2900, 20.0, 1, 1.0), 7 * 96 * 900.0)
    assert fleet._beacons["door"].battery_mv == 2900  # the latest address still counts


def test_notification_caps_forget_customers_notified_on_earlier_days() -> None:
    guard = NotificationGuard(GuardSettings(), "Europe/Rome")
    day1 = datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Europe/Rome")).timestamp()
    for i in range(1000):
        guard.sent(f"c{i}", f"v{i}", day1)
        guard.visit_ended(f"c{i}", f"v{i}")
    assert len(guard._sent) == 1000
    guard.sent("c-late", "v-late", day1 + 2 * 86_400)
    assert list(guard._sent) == ["c-late"]
    # Today's caps still hold for whoever was notified today.
    customer = Customer("c-late", b"\x00" * 16, consent_service=True)
    assert guard.refusal(customer, "service", "v-late", day1 + 2 * 86_400 + 1) is not None
    # Asking about customers never notified (every recognised shopper is asked about) keeps
    # nothing: a day with no notification sent, and so no sweep, must not grow the map.
    for i in range(1000):
        assert (
            guard.refusal(Customer(f"asked-{i}", b"\x00" * 16, True), "service", "v", day1 + 3 * 86_400)
            is None
        )
    assert list(guard._sent) == ["c-late"]


_ROTATIONS = r"""
import array, ctypes, sys
from edge_agent.adapters.malloc import map_large_blocks
if sys.argv[1] == "fixed":
    assert map_large_blocks()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
kept, tables = [], [array.array("Q", bytes(24 << 20))]
for rotation in range(30):  # a table of a new size each rotation, the oldest freed
    tables.append(array.array("Q", bytes((8 + rotation % 3 * 4) << 20)))
    kept.append([bytes(600 + rotation) for _ in range(300)])  # what the day leaves behind
    if len(tables) > 3:
        del tables[0]
print(libc.mallinfo2().arena)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_memory_of_freed_token_tables_goes_back_to_the_system() -> None:
    """Rotations allocate and free tables of many megabytes while small objects pile up between
    them. With glibc's own (dynamic) mmap threshold the tables land in the heap, whose freed
    holes are never given back (the week benchmark's heap grew 18 MB a day, in-use flat); with
    the daemon's fixed threshold they are mapped and unmapped, and the heap holds only the
    small objects."""

    def heap_mb(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _ROTATIONS, mode], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        return int(done.stdout) / 2**20

    assert heap_mb("fixed") < 16
    assert heap_mb("dynamic") > 64  # what the fixed threshold is for
