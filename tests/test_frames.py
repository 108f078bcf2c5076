"""Beacon frame decoders: right values from well-formed frames, a reason (never a crash) otherwise.

Frames are laid out byte by byte from the public specifications: Apple's iBeacon layout as
published in the Proximity Beacon Specification (prefix 02 15, UUID, major, minor, power), the
AltBeacon specification's field table (github.com/AltBeacon/spec README: AD length 0x1B, type
0xFF, company id, BE AC, 20-byte id, reference RSSI, reserved) and the Eddystone protocol
specification (github.com/google/eddystone: eddystone-uid, -url, -tlm, -eid pages).
The iBeacon UUID is Apple's AirLocate sample UUID. Eddystone-URL's example URL and TX power
examples are the ones on github.com/google/eddystone eddystone-url/README.md. Apple overflow-area
captures: D. G. Young, "Hacking the Overflow Area" (davidgyoungtech.com, 2020-05-07), and an
HCI capture posted in answer to "BLE advertising of UUID from background iOS app".
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.const import COMPANY_APPLE, EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import (
    AltBeacon,
    AppleOverflow,
    BeaconOnly,
    EddystoneEid,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    NotThisFrame,
    decode_advertisement,
    decode_altbeacon,
    decode_apple_overflow,
    decode_eddystone,
    decode_ibeacon,
    encode_altbeacon,
    encode_apple_overflow,
    encode_eddystone_eid,
    encode_eddystone_encrypted_tlm,
    encode_eddystone_tlm,
    encode_eddystone_uid,
    encode_eddystone_url,
    encode_ibeacon,
)

AIRLOCATE = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")


def test_ibeacon_fields() -> None:
    frame = decode_ibeacon(COMPANY_APPLE, AIRLOCATE)
    assert frame == IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    assert frame.identifier == "ibeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"


def test_ibeacon_from_another_company_or_truncated_is_not_an_ibeacon() -> None:
    assert isinstance(decode_ibeacon(0x0059, AIRLOCATE), NotThisFrame)
    truncated = decode_ibeacon(COMPANY_APPLE, AIRLOCATE[:-1])
    assert truncated == NotThisFrame("iBeacon must be 23 bytes, got 22")


def test_altbeacon_fields() -> None:
    # Laid out from the AltBeacon spec's field table, AD header included: length 0x1B, type 0xFF,
    # company 0x0118 (Radius Networks) little-endian, code BE AC, a 20-byte id (the Android
    # Beacon Library reference app's 2f234454-... with 1 and 2 appended), reference RSSI, reserved.
    structure = bytes.fromhex("1bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c500")
    assert structure[0] == len(structure) - 1
    company = int.from_bytes(structure[2:4], "little")
    frame = decode_altbeacon(company, structure[4:])
    assert frame == AltBeacon(0x0118, bytes.fromhex("2f234454cf6d4a0fadf2f4911ba9ffa600010002"), -59, 0)
    assert frame.identifier == "altbeacon:2f234454cf6d4a0fadf2f4911ba9ffa600010002"


def test_eddystone_uid_with_and_without_reserved_bytes() -> None:
    body = bytes.fromhex("00e78b15a6b5a56e54d0c3f1000000000001")
    expected = EddystoneUid(-25, bytes.fromhex("8b15a6b5a56e54d0c3f1"), bytes.fromhex("000000000001"))
    assert decode_eddystone(body) == expected
    assert decode_eddystone(body + b"\x00\x00") == expected


def test_eddystone_url_expands_scheme_and_suffix() -> None:
    # Scheme 0x03 is https://, expansion 0x08 is .org, 0x07 is .com (eddystone-url specification).
    body = bytes([0x10, 0xEB, 0x03]) + b"goo" + bytes([0x08]) + b"/S6zT6P"
    assert decode_eddystone(body) == EddystoneUrl(-21, "https://goo.org/S6zT6P")
    assert decode_eddystone(bytes([0x10, 0xEB, 0x00]) + b"example" + bytes([0x07])) == EddystoneUrl(
        -21, "http://www.example.com"
    )


def test_eddystone_url_rejects_reserved_bytes_and_schemes() -> None:
    assert isinstance(decode_eddystone(bytes([0x10, 0, 0x04]) + b"a"), NotThisFrame)
    assert isinstance(decode_eddystone(bytes([0x10, 0, 0x02, 0x0E])), NotThisFrame)


def test_eddystone_tlm_fixed_point_temperature_and_counters() -> None:
    # 3000 mV, 23.5 C (0x1780 in 8.8), 1000 advertisements, 360.0 s uptime (3600 x 0.1 s).
    body = bytes.fromhex("20000bb81780000003e800000e10")
    assert decode_eddystone(body) == EddystoneTlm(3000, 23.5, 1000, 360.0)
    negative = bytes.fromhex("20000000ff800000000000000000")
    assert decode_eddystone(negative) == EddystoneTlm(None, -0.5, 0, 0.0)
    unsupported = bytes.fromhex("20000bb880000000000000000000")
    assert decode_eddystone(unsupported).temperature_c is None


def test_encrypted_tlm_envelope_is_decoded() -> None:
    # tlm-encrypted.md: 20 01 | ETLM (12) | salt (2) | MIC (2).
    body = bytes.fromhex("2001") + bytes(range(12)) + bytes.fromhex("abcd") + bytes.fromhex("1234")
    frame = decode_eddystone(body)
    assert frame == EddystoneEncryptedTlm(bytes(range(12)), bytes.fromhex("abcd"), bytes.fromhex("1234"))
    assert encode_eddystone_encrypted_tlm(frame) == body
    assert decode_eddystone(body[:-1]) == NotThisFrame("encrypted Eddystone-TLM must be 18 bytes, got 17")


def test_eddystone_url_without_an_encoded_byte_is_rejected() -> None:
    # eddystone-url/README.md: "3+ | Encoded URL | Length 1-17": the scheme alone is no URL.
    assert decode_eddystone(bytes.fromhex("109f02")) == NotThisFrame(
        "Eddystone-URL has no encoded URL after the scheme (1-17 bytes required)"
    )


def test_frames_only_beacons_send_are_beacon_only_not_nothing() -> None:
    # Unknown frame types (0x40, 0x50, ...), later TLM versions, and malformed UID/URL/TLM frames
    # in 0xFEAA service data all come from beacons or tags; a malformed EID decodes to nothing.
    assert decode_eddystone(bytes.fromhex("40") + bytes(20)) == BeaconOnly(
        0x40, "unknown Eddystone frame type 0x40"
    )
    assert decode_eddystone(bytes.fromhex("2002") + bytes(12)) == BeaconOnly(
        0x20, "Eddystone-TLM version 0x02 is not decoded"
    )
    [url] = decode_advertisement({}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("109f02")})
    assert isinstance(url, BeaconOnly)
    assert url.frame_type == 0x10
    assert decode_advertisement({}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("30ec01")}) == []


@given(st.binary(min_size=1, max_size=30).filter(lambda data: data[0] != 0x30))
def test_any_non_eid_eddystone_service_data_is_a_beacon_frame(data: bytes) -> None:
    [frame] = decode_advertisement({}, {EDDYSTONE_SERVICE_UUID: data})
    assert not isinstance(frame, EddystoneEid | NotThisFrame)


def test_eddystone_eid() -> None:
    assert decode_eddystone(bytes.fromhex("30ec0102030405060708")) == EddystoneEid(
        -20, bytes.fromhex("0102030405060708")
    )


def test_advertisement_with_several_frames_yields_them_all() -> None:
    frames = decode_advertisement(
        {COMPANY_APPLE: AIRLOCATE}, {EDDYSTONE_SERVICE_UUID: bytes.fromhex("30ec0102030405060708")}
    )
    assert [type(f) for f in frames] == [IBeacon, EddystoneEid]


@given(st.integers(0, 0xFFFF), st.binary(max_size=40))
def test_random_manufacturer_data_never_raises(company: int, data: bytes) -> None:
    assert isinstance(decode_ibeacon(company, data), IBeacon | NotThisFrame)
    assert isinstance(decode_altbeacon(company, data), AltBeacon | NotThisFrame)


@given(st.binary(max_size=40))
def test_random_service_data_never_raises(data: bytes) -> None:
    decode_eddystone(data)


@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=4),
    st.dictionaries(
        st.sampled_from([EDDYSTONE_SERVICE_UUID, "0000fd6f-0000-1000-8000-00805f9b34fb"]),
        st.binary(max_size=30),
        max_size=2,
    ),
)
def test_random_bleak_shaped_advertisements_never_raise(manufacturer: dict, service: dict) -> None:
    decode_advertisement(manufacturer, service)


@given(st.uuids(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(-128, 127))
def test_ibeacon_round_trip(uuid, major: int, minor: int, power: int) -> None:
    frame = IBeacon(str(uuid), major, minor, power)
    assert decode_ibeacon(*encode_ibeacon(frame)) == frame


@given(st.integers(-128, 127), st.binary(min_size=10, max_size=10), st.binary(min_size=6, max_size=6))
def test_eddystone_uid_round_trip(power: int, namespace: bytes, instance: bytes) -> None:
    frame = EddystoneUid(power, namespace, instance)
    assert decode_eddystone(encode_eddystone_uid(frame)) == frame


@given(st.integers(-128, 127), st.binary(min_size=8, max_size=8))
def test_eddystone_eid_round_trip(power: int, eid: bytes) -> None:
    frame = EddystoneEid(power, eid)
    assert decode_eddystone(encode_eddystone_eid(frame)) == frame


def test_eddystone_url_specification_example() -> None:
    # "https://goo.gl/S6zT6P" with TX power 0xEE, which the specification reads as -18 dBm.
    body = bytes([0x10, 0xEE, 0x03]) + b"goo.gl/S6zT6P"
    assert decode_eddystone(body) == EddystoneUrl(-18, "https://goo.gl/S6zT6P")
    assert decode_eddystone(bytes([0x10, 0x12, 0x03]) + b"goo.gl/Aq18zF") == EddystoneUrl(
        18, "https://goo.gl/Aq18zF"
    )


def test_apple_overflow_area_published_captures() -> None:
    # Young (2020): service 00000000-0000-0000-0000-000000000039 from a backgrounded app.
    young = bytes.fromhex("0100000000000000000000000000000080")
    frame = decode_apple_overflow(0x004C, young)
    assert isinstance(frame, AppleOverflow)
    # Young's table (OverflowAreaUtils.swift in his reference app) puts ...0039 at index 127:
    # bit = mask byte x 8 + bit in the byte, least significant first; 0x80 in byte 15 is 127.
    assert [bit for bit in range(128) if frame.has_bit(bit)] == [127]
    # HCI capture "... 14 FF 4C 00 01 00 00 00 00 00 00 00 02 00 ..." for service 3333:
    # 0x02 in mask byte 7 is bit 7 x 8 + 1.
    hci = bytes.fromhex("0100000000000000020000000000000000")
    assert [bit for bit in range(128) if decode_apple_overflow(0x004C, hci).has_bit(bit)] == [57]


def test_apple_overflow_numbering_follows_youngs_table_at_both_ends() -> None:
    # His table's first entries: index 0 is ...007C (byte 0, 0x01), index 7 ...0000 (byte 0, 0x80),
    # index 8 ...0036 (byte 1, 0x01).
    assert encode_apple_overflow([0])[1] == bytes.fromhex("01") + bytes.fromhex("01") + bytes(15)
    assert encode_apple_overflow([7])[1] == bytes.fromhex("01") + bytes.fromhex("80") + bytes(15)
    assert encode_apple_overflow([8])[1] == bytes.fromhex("01") + bytes.fromhex("0001") + bytes(14)
    assert encode_apple_overflow([127])[1] == bytes.fromhex("01") + bytes(15) + bytes.fromhex("80")


def test_overflow_area_is_recognised_in_a_whole_advertisement() -> None:
    company, data = encode_apple_overflow([62])
    [frame] = decode_advertisement({company: data}, {})
    assert isinstance(frame, AppleOverflow)
    assert frame.has_bit(62)
    assert not frame.has_bit(61)
    assert decode_apple_overflow(0x004C, data[:-1]) == NotThisFrame(
        "Apple overflow area must be 17 bytes, got 16"
    )


@given(
    st.integers(0, 0xFFFF), st.binary(min_size=20, max_size=20), st.integers(-128, 127), st.integers(0, 255)
)
def test_altbeacon_round_trip(company: int, beacon_id: bytes, rssi: int, reserved: int) -> None:
    frame = AltBeacon(company, beacon_id, rssi, reserved)
    assert decode_altbeacon(*encode_altbeacon(frame)) == frame


url_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


@given(
    st.sampled_from(["http://www.", "https://www.", "http://", "https://"]), url_text, st.integers(-100, 20)
)
def test_eddystone_url_round_trip(scheme: str, rest: str, power: int) -> None:
    frame = EddystoneUrl(power, scheme + rest)
    encoded = encode_eddystone_url(frame)
    if 1 <= len(encoded) - 3 <= 17:  # other lengths are not a URL frame, by specification
        assert decode_eddystone(encoded) == frame


@given(
    st.none() | st.integers(1, 0xFFFF),
    st.none() | st.integers(-0x8000 + 1, 0x7FFF).map(lambda raw: raw / 256),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1).map(lambda tenths: tenths / 10),
)
def test_eddystone_tlm_round_trip(
    battery: int | None, temperature: float | None, count: int, uptime: float
) -> None:
    frame = EddystoneTlm(battery, temperature, count, uptime)
    assert decode_eddystone(encode_eddystone_tlm(frame)) == frame


@given(st.sets(st.integers(0, 127), max_size=5))
def test_apple_overflow_round_trip(bits: set[int]) -> None:
    frame = decode_apple_overflow(*encode_apple_overflow(sorted(bits)))
    assert isinstance(frame, AppleOverflow)
    assert {bit for bit in range(128) if frame.has_bit(bit)} == bits
