"""What a recording keeps: pseudonyms per recording, only the fields the agent decodes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.const import COMPANY_APPLE, EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneTlm, decode_sighting, encode_apple_overflow, encode_eddystone_tlm
from edge_agent.core.recording import RecordingFilter, pseudonymous_address
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import format_trace_line, read_trace
from tests.helpers import app_sighting

AIRLOCATE = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
NEARBY_INFO = bytes.fromhex("1005031c0d2f9a")  # an Apple continuity message: not decoded, dropped
PHONE, BEACON = "5A:11:22:33:44:55", "C0:FF:EE:00:00:01"
KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))
ADDRESS_SHAPE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def _phone(ts: float = 1.0, address: str = PHONE, **fields: object) -> Sighting:
    return Sighting(ts, "entrance", address, -60, **fields)  # type: ignore[arg-type]  # test shorthand


def test_one_device_is_one_pseudonym_within_a_recording_and_another_across_recordings() -> None:
    first, second = RecordingFilter(KEY_A), RecordingFilter(KEY_B)
    one = first.apply(_phone(1.0)).address
    assert first.apply(_phone(2.0)).address == one
    assert first.apply(_phone(3.0, address=PHONE.lower())).address == one
    assert first.apply(_phone(3.0, address="5A:11:22:33:44:56")).address != one
    assert second.apply(_phone(1.0)).address != one
    assert one != PHONE


@given(st.binary(min_size=16, max_size=64), st.text(min_size=1, max_size=40))
def test_pseudonyms_are_locally_administered_unicast_addresses(key: bytes, address: str) -> None:
    pseudonym = pseudonymous_address(key, address)
    assert ADDRESS_SHAPE.match(pseudonym)
    first_octet = int(pseudonym[:2], 16)
    assert first_octet & 0x02  # locally administered
    assert not first_octet & 0x01  # unicast


def test_only_the_fields_the_agent_decodes_are_kept_for_phones() -> None:
    company, overflow = encode_apple_overflow([62])
    heard = _phone(
        tx_power=8,
        manufacturer_data={COMPANY_APPLE: NEARBY_INFO, 0x0075: b"\x42\x04\x01\x01"},
        service_data={"0000fd6f-0000-1000-8000-00805f9b34fb": b"\x01" * 20},
        service_uuids=("0000fd6f-0000-1000-8000-00805f9b34fb",),
        name="Maria's iPhone",
    )
    kept = RecordingFilter(KEY_A).apply(heard)
    assert (kept.manufacturer_data, kept.service_data, kept.service_uuids, kept.name, kept.tx_power) == (
        {}, {}, (), None, None,
    )  # fmt: skip
    overflow_phone = RecordingFilter(KEY_A).apply(_phone(manufacturer_data={company: overflow}))
    assert overflow_phone.manufacturer_data == {company: overflow}
    token = app_sighting("c1", 1_760_000_000.0)
    app = RecordingFilter(KEY_A).apply(token)
    assert app.service_data == token.service_data
    assert app.address != token.address


def test_a_fixed_beacon_keeps_its_address_and_fields_for_the_whole_recording() -> None:
    recording = RecordingFilter(KEY_A)
    ibeacon = Sighting(
        1.0, "entrance", BEACON, -50, manufacturer_data={COMPANY_APPLE: AIRLOCATE}, name="beacon"
    )
    assert recording.apply(ibeacon) == ibeacon
    tlm = encode_eddystone_tlm(EddystoneTlm(3000, 20.0, 1, 1.0))
    telemetry = Sighting(2.0, "entrance", BEACON, -50, service_data={EDDYSTONE_SERVICE_UUID: tlm})
    assert recording.apply(telemetry) == telemetry
    other = Sighting(3.0, "entrance", BEACON, -50, manufacturer_data={0x0059: b"\x01\x02"})
    assert recording.apply(other).address == BEACON


def test_no_raw_address_of_a_phone_is_in_the_recorded_file(tmp_path: Path) -> None:
    recording = RecordingFilter(KEY_A)
    phones = [f"5A:00:00:00:{i:02X}:{j:02X}" for i in range(4) for j in range(16)]
    sightings = [
        _phone(float(n), address=a, manufacturer_data={COMPANY_APPLE: NEARBY_INFO})
        for n, a in enumerate(phones)
    ]
    sightings.append(app_sighting("c1", 1_760_000_000.0))
    sightings.append(Sighting(9.0, "entrance", BEACON, -50, manufacturer_data={COMPANY_APPLE: AIRLOCATE}))
    path = tmp_path / "recording.jsonl"
    path.write_text("".join(format_trace_line(recording.apply(s)) + "\n" for s in sightings))
    written = path.read_bytes().upper()
    for address in [*phones, "5A:00:00:00:00:01"]:
        assert address.encode() not in written
        assert address.replace(":", "").encode() not in written
    assert NEARBY_INFO.hex().upper().encode() not in written
    assert BEACON.encode() in written


advertisements = st.builds(
    Sighting,
    st.floats(0, 2e9),
    st.just("entrance"),
    st.sampled_from([PHONE, BEACON, "4F:00:00:00:00:02"]),
    st.integers(-127, 20),
    st.none() | st.integers(-127, 127),
    st.dictionaries(
        st.sampled_from([COMPANY_APPLE, 0x0118, 0x0075]),
        st.sampled_from([AIRLOCATE, NEARBY_INFO, encode_apple_overflow([3, 127])[1], b"\xbe\xac" + bytes(22)])
        | st.binary(max_size=30),
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from([EDDYSTONE_SERVICE_UUID, "0000fd6f-0000-1000-8000-00805f9b34fb"]),
        st.binary(max_size=24),
        max_size=2,
    ),
    st.lists(
        st.sampled_from([EDDYSTONE_SERVICE_UUID, "0000180f-0000-1000-8000-00805f9b34fb"]), max_size=2
    ).map(tuple),
    st.none() | st.text(max_size=10),
)


@given(st.lists(advertisements, max_size=8))
def test_replay_of_a_filtered_recording_decodes_to_the_same_frames(heard: list[Sighting]) -> None:
    recording = RecordingFilter(KEY_A)
    lines = [format_trace_line(recording.apply(s)) for s in heard]
    replayed = [s for s in read_trace(lines) if isinstance(s, Sighting)]
    assert len(replayed) == len(heard)
    for original, again in zip(heard, replayed, strict=True):
        # As a multiset: the trace writes manufacturer data in company order.
        assert Counter(decode_sighting(again)) == Counter(decode_sighting(original))
