"""A beacon is never a shopper: beacon-only frames keep fixed beacons out of footfall and visits.

Driven through ``StoreCore.observe``/``tick`` with an hour of sightings, as the daemon does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.etlm import encrypt_tlm
from edge_agent.core.events import BeaconFleetMessage, FootfallMessage, Message
from edge_agent.core.frames import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUrl,
    encode_eddystone_eid,
    encode_eddystone_encrypted_tlm,
    encode_eddystone_tlm,
    encode_eddystone_url,
)
from edge_agent.core.identity import eid_token
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import BeaconSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.store import StoreCore
from tests.conftest import make_config
from tests.helpers import phone_sighting

KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")
K = 10  # identity.rotation_exponent's default
START = 1_760_000_000.0  # mid-morning in Rome
ADDRESS = "C2:00:00:00:00:42"
TLM = EddystoneTlm(2400, 19.5, 1000, 86400.0)


def _core(**beacon: Any) -> StoreCore:
    config = make_config(Path("/nonexistent"), beacon_health={"summary_interval_s": 1800.0})
    if beacon:
        config = config.model_copy(update={"beacons": [BeaconSettings(**beacon)]})
    return StoreCore(config, EventIdFactory.seeded("b"))


def _eid_beacon_sightings(seconds: int, etlm_first: bool = False) -> list[Sighting]:
    """An EID beacon at one address: an EID frame each second, encrypted TLM every tenth."""
    sightings = []
    for i in range(seconds):
        ts = START + i
        if i % 10 == (0 if etlm_first else 5):
            frame = encrypt_tlm(TLM, KEY, int(ts), K, i.to_bytes(2, "big"))
            data = encode_eddystone_encrypted_tlm(frame)
        else:
            data = encode_eddystone_eid(EddystoneEid(-20, eid_token(KEY, K, int(ts))))
        sightings.append(Sighting(ts, "counter", ADDRESS, -55, service_data={EDDYSTONE_SERVICE_UUID: data}))
    return sightings


def _drive(core: StoreCore, sightings: list[Sighting], until: float) -> list[Message]:
    messages: list[Message] = []
    pending = iter(sightings)
    upcoming = next(pending, None)
    now = START
    while now <= until:
        while upcoming is not None and upcoming.ts <= now:
            messages += core.observe(upcoming)
            upcoming = next(pending, None)
        messages += core.tick(now)
        now += 1.0
    return messages


def _entries(messages: list[Message]) -> int:
    return sum(m.entries for m in messages if isinstance(m, FootfallMessage))


def test_an_eid_beacon_interleaving_encrypted_tlm_is_no_shopper_and_reports_its_battery() -> None:
    core = _core(id="eid:lobby", name="lobby", identity_key=KEY.hex())
    messages = _drive(core, _eid_beacon_sightings(3600), START + 3600)
    footfall = [m for m in messages if isinstance(m, FootfallMessage)]
    assert len(footfall) == 4  # 15-minute intervals over the hour
    assert _entries(messages) == 0
    assert core.open_visits == 0
    assert core.counters["unresolved_tokens"] == 0
    [*_, summary] = [m for m in messages if isinstance(m, BeaconFleetMessage)]
    [status] = summary.beacons
    assert (status.state, status.battery_mv, status.temperature_c) == ("present", 2400, 19.5)


def test_without_its_key_the_eid_beacon_is_known_by_its_encrypted_tlm() -> None:
    core = _core()
    messages = _drive(core, _eid_beacon_sightings(3600, etlm_first=True), START + 3600)
    assert _entries(messages) == 0
    assert core.open_visits == 0


def test_plain_beacon_frames_keep_their_address_out_of_footfall_but_phones_count() -> None:
    core = _core()
    url = encode_eddystone_url(EddystoneUrl(-20, "https://example.com"))
    tlm = encode_eddystone_tlm(TLM)
    beacon = [
        Sighting(
            START + i, "counter", ADDRESS, -55, service_data={EDDYSTONE_SERVICE_UUID: url if i % 2 else tlm}
        )
        for i in range(600)
    ]
    beacon += [
        Sighting(START + 0.5, "counter", ADDRESS, -55, manufacturer_data={0x004C: bytes.fromhex("1005031c")})
    ]
    phone = [phone_sighting("4F:00:00:00:00:01", START + i, receiver="entrance") for i in range(60)]
    messages = _drive(core, sorted(beacon + phone, key=lambda s: s.ts), START + 1800)
    assert _entries(messages) == 1  # the phone, not the beacon's other advertisement


def test_a_beacon_identity_key_is_checked_and_never_shown() -> None:
    import pytest

    from edge_agent.adapters.configfile import render_toml
    from edge_agent.core.errors import ConfigError
    from edge_agent.core.validation import config_from_mapping

    config = config_from_mapping(
        {"store": {"id": "s1"}, "beacons": [{"id": "eid:lobby", "identity_key": KEY.hex()}]}
    )
    assert KEY.hex() not in render_toml(config)
    assert 'identity_key = "**********"' in render_toml(config)
    assert KEY.hex() not in repr(config)
    with pytest.raises(ConfigError, match="32 hex digits"):
        config_from_mapping({"store": {"id": "s1"}, "beacons": [{"id": "b", "identity_key": "00ff"}]})


@given(
    st.binary(min_size=1, max_size=24).filter(lambda data: data[0] != 0x30),
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=24), max_size=2),
)
@settings(max_examples=50, deadline=None)
def test_any_sighting_with_a_beacon_only_frame_is_never_a_visitor(
    eddystone: bytes, manufacturer: dict
) -> None:
    core = _core()
    for i in range(5):
        core.observe(
            Sighting(START + i, "entrance", ADDRESS, -50, manufacturer_data=manufacturer,
                     service_data={EDDYSTONE_SERVICE_UUID: eddystone})
        )  # fmt: skip
    core.observe(Sighting(START + 6, "entrance", ADDRESS, -50, manufacturer_data=manufacturer))
    assert core.open_visits == 0
    assert _entries(core.tick(START + 3600)) == 0
